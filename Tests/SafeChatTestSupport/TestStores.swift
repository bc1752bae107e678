import Foundation
import SafeChatGateway
import SafeChatS3

/// The blob stores the gateway suite runs against: the local data directory (the embedded default)
/// and S3 on the SeaweedFS that `.ci/services start` runs on loopback.
public enum TestStore: String, Sendable, CaseIterable, CustomStringConvertible {
    case local, s3

    public var description: String { rawValue }
}

/// The object store of `.ci/services`: its settings from the environment (SAFECHAT_TEST_S3_*) or
/// from the file that script writes. A test that needs it and finds it missing fails, naming the
/// script: it never skips.
public struct TestObjectStore: Sendable {
    public let endpoint: String
    public let bucket: String
    public let accessKeyID: String
    public let secretAccessKey: String

    public static func fromEnvironment() throws -> TestObjectStore {
        var values = ProcessInfo.processInfo.environment
        if values["SAFECHAT_TEST_S3_ENDPOINT"] == nil {
            let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent(".build/test-services/env")
            for line in ((try? String(contentsOf: file, encoding: .utf8)) ?? "").split(separator: "\n") {
                let parts = line.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { values[String(parts[0])] = String(parts[1]) }
            }
        }
        guard let endpoint = values["SAFECHAT_TEST_S3_ENDPOINT"], let bucket = values["SAFECHAT_TEST_S3_BUCKET"],
              let id = values["SAFECHAT_TEST_S3_ACCESS_KEY_ID"], let secret = values["SAFECHAT_TEST_S3_SECRET_ACCESS_KEY"] else {
            throw TestStoreMissing(description: "no S3 test store: run `bash .ci/services start` (it starts SeaweedFS on loopback)")
        }
        return TestObjectStore(endpoint: endpoint, bucket: bucket, accessKeyID: id, secretAccessKey: secret)
    }

    /// A store under `s3://BUCKET/PREFIX`, checked (a store that does not answer fails the test).
    public func blobStore(prefix: String, maxObjectSize: Int64 = 64 << 30) async throws -> S3BlobStore {
        let store = S3BlobStore(settings: try settings(prefix: prefix, maxObjectSize: maxObjectSize))
        do { try await store.check() } catch {
            throw TestStoreMissing(description: "the S3 test store at \(endpoint) does not answer (\(error)): run `bash .ci/services start`")
        }
        return store
    }

    public func settings(prefix: String, maxObjectSize: Int64 = 64 << 30) throws -> S3Settings {
        try S3Settings(location: "s3://\(bucket)/\(prefix)", endpoint: endpoint, region: nil,
                       credentials: S3Credentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey), maxObjectSize: maxObjectSize)
    }

    /// `safechat serve` options and environment for this store under `prefix`.
    public func serveArguments(prefix: String) -> (options: [String], environment: [String: String]) {
        (["--blob-store", "s3://\(bucket)/\(prefix)", "--s3-endpoint", endpoint],
         ["AWS_ACCESS_KEY_ID": accessKeyID, "AWS_SECRET_ACCESS_KEY": secretAccessKey])
    }

    /// Runs awscli (an independent S3 client) against this store; returns its standard output.
    public func aws(_ arguments: [String]) async throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment["AWS_ACCESS_KEY_ID"] = accessKeyID
        environment["AWS_SECRET_ACCESS_KEY"] = secretAccessKey
        environment["AWS_DEFAULT_REGION"] = "us-east-1"
        environment["AWS_CA_BUNDLE"] = nil
        let run = try await runProcess(["aws", "--endpoint-url", endpoint] + arguments, environment: environment, errorsApart: true)
        guard run.status == 0 else { throw TestStoreMissing(description: "aws \(arguments.joined(separator: " ")): \(run.errors)") }
        return run.output
    }
}

public struct TestStoreMissing: Error, CustomStringConvertible {
    public let description: String
}

extension TestGateway {
    /// What the blob store holds: finished files, and whatever uploads in progress keep there
    /// (local: partial files; S3: multipart uploads and tail objects).
    public func storedBlobs() async throws -> (files: [String], uploads: [String]) {
        if let store = gateway.blobs as? S3BlobStore {
            let inventory = try await store.inventory()
            return (inventory.files, inventory.multipartUploads + inventory.tails)
        }
        let data = dataDirectory + "/data"
        return (try FileManager.default.contentsOfDirectory(atPath: data + "/blobs"),
                try FileManager.default.contentsOfDirectory(atPath: data + "/partial"))
    }
}
