import Foundation
import Testing
@testable import SafeChatS3

/// Flags, credentials and the store's XML answers are untrusted input: each is refused with a
/// line that says what to fix, or read without ever crashing.
@Suite struct S3SettingsTests {
    static let credentials = S3Credentials(accessKeyID: "AKID", secretAccessKey: "secret")

    @Test func locationsAndEndpoints() throws {
        let settings = try S3Settings(location: "s3://my-bucket/a/b/", endpoint: "http://127.0.0.1:8333", region: nil,
                                      credentials: Self.credentials, maxObjectSize: 1 << 30)
        #expect(settings.bucket == "my-bucket" && settings.prefix == "a/b/" && settings.region == "us-east-1")
        #expect(settings.endpoint.hostHeader == "127.0.0.1:8333")
        #expect(try S3Endpoint("https://s3.eu-west-3.amazonaws.com").hostHeader == "s3.eu-west-3.amazonaws.com")
        #expect(try S3Settings.parse(location: "s3://bucket").prefix == "")
        for bad in ["bucket", "s3://", "s3://UPPER", "s3://ab", "s3://b/../x", "s3://bucket/a b", "s3://bucket/é", "s3://-bucket"] {
            #expect(throws: S3ConfigurationError.self, "\(bad)") { try S3Settings.parse(location: bad) }
        }
        for bad in ["ftp://host", "http://", "http://user:secret@host:9000", "http://host/path", "http://host?x=1", "not a url"] {
            #expect(throws: S3ConfigurationError.self, "\(bad)") { try S3Endpoint(bad) }
        }
        #expect(throws: S3ConfigurationError.self) {
            try S3Settings(location: "s3://bucket", endpoint: "http://h", region: "us east\n", credentials: Self.credentials, maxObjectSize: 1)
        }
    }

    @Test func credentialsComeFromTheEnvironmentOrAPrivateFile() throws {
        let fromEnvironment = try S3Credentials.load(environment: ["AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok"])
        #expect(fromEnvironment.accessKeyID == "AKID" && fromEnvironment.secretAccessKey == "s3cr3t" && fromEnvironment.sessionToken == "tok")
        // The secret never shows in a description (which is what logs and errors print).
        #expect(!String(reflecting: fromEnvironment).contains("s3cr3t"))
        #expect("\(fromEnvironment)" == "access key AKID")
        #expect(throws: S3ConfigurationError.self) { try S3Credentials.load(environment: ["AWS_ACCESS_KEY_ID": "AKID", "HOME": "/nonexistent"]) }

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("creds-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("credentials").path
        try "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n[work]\n# a comment\naws_access_key_id=WORK\naws_secret_access_key = worksecret\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        chmod(file, 0o600)
        let environment = ["AWS_SHARED_CREDENTIALS_FILE": file]
        #expect(try S3Credentials.load(environment: environment).accessKeyID == "DEF")
        #expect(try S3Credentials.load(environment: environment.merging(["AWS_PROFILE": "work"]) { $1 }).secretAccessKey == "worksecret")
        #expect(throws: S3ConfigurationError.self) { try S3Credentials.load(environment: environment.merging(["AWS_PROFILE": "none"]) { $1 }) }
        chmod(file, 0o644)
        let loose = #expect(throws: S3ConfigurationError.self) { try S3Credentials.load(environment: environment) }
        #expect(loose?.description.contains("chmod 600") == true)
        #expect(throws: S3ConfigurationError.self) { try S3Credentials.load(environment: ["HOME": directory.path + "/none"]) }
    }

    @Test func theStoresXMLIsReadWithoutCrashingWhateverItIs() {
        let listing: Substring = """
            <?xml version="1.0"?><ListMultipartUploadsResult><Upload><Key>a&amp;b</Key><UploadId>1</UploadId></Upload>\
            <Upload><Key>c&#x41;&#66;</Key><UploadId>2</UploadId></Upload><UploadIdMarker/><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>
            """
        let uploads = S3XML.elements("Upload", in: listing)
        #expect(uploads.count == 2)
        #expect(uploads.compactMap { S3XML.value("Key", in: $0) } == ["a&b", "cAB"])
        #expect(S3XML.value("UploadIdMarker", in: listing) == "")
        #expect(S3XML.value("UploadId", in: listing) == "1")
        // Whatever the bytes, reading never traps: random fragments of XML-ish text.
        let pieces = ["<", ">", "/", "<UploadId>", "</UploadId>", "<UploadId/>", "<UploadId", "&", "&amp;", "&#", "&#x110000;", ";", "x", " ", "<Upload>"]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<5000 {
            let text = (0..<Int.random(in: 0..<12, using: &generator)).map { _ in pieces.randomElement(using: &generator)! }.joined()
            _ = S3XML.values("UploadId", in: Substring(text))
            _ = S3XML.elements("Upload", in: Substring(text))
        }
    }
}
