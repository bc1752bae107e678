import Foundation
import Testing

/// `safechat serve`'s one configuration system: a config file (JSON or YAML), the environment and
/// flags, in increasing precedence; `--print-config` tells each value's source with secrets
/// redacted; a bad value or an unknown key stops the start with one line naming the key.
@Suite struct ServeConfigurationTests {
    /// `serve` with `environment` added to a clean one (no SAFECHAT_* of the test's own).
    func serve(_ arguments: [String], environment: [String: String] = [:], in scratch: Scratch) async throws -> CLI.Result {
        var base = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SAFECHAT_") && $0.key != "PGPASSWORD" }
        base.merge(environment) { $1 }
        return try await CLI.run(["serve"] + arguments, in: scratch.url, environment: base)
    }

    /// The printed line of one key: its value and its source.
    func line(_ key: String, in output: Data) -> String {
        String(decoding: output, as: UTF8.self).split(separator: "\n").first { $0.hasPrefix(key + " ") }.map(String.init) ?? ""
    }

    @Test func flagsOutrankTheEnvironmentWhichOutranksTheFile() async throws {
        let scratch = try Scratch()
        try scratch.write("gateway.yaml", Array("""
            # Kept under version control by the operator.
            port: 7001
            quota: 5G
            host: 0.0.0.0
            log-format: json
            direct-io: false
            chat-queue: 50
            """.utf8))
        let run = try await serve(["--config", scratch.path("gateway.yaml"), "--port", "7003", "--print-config"],
                            environment: ["SAFECHAT_PORT": "7002", "SAFECHAT_QUOTA": "9G", "SAFECHAT_CHAT_QUEUE": "60"], in: scratch)
        #expect(run.status == 0, "\(run.stderr)")
        #expect(line("port", in: run.stdout).contains("7003") && line("port", in: run.stdout).contains("[flag --port]"))
        #expect(line("quota", in: run.stdout).contains("9G") && line("quota", in: run.stdout).contains("[environment SAFECHAT_QUOTA]"))
        #expect(line("chat-queue", in: run.stdout).contains("60"))
        let fromFile = "[config file \(scratch.path("gateway.yaml"))]"
        #expect(line("host", in: run.stdout).contains("0.0.0.0") && line("host", in: run.stdout).contains(fromFile))
        #expect(line("log-format", in: run.stdout).contains("json") && line("log-format", in: run.stdout).contains(fromFile))
        #expect(line("direct-io", in: run.stdout).contains("false"), "\(line("direct-io", in: run.stdout))")
        #expect(line("max-file-size", in: run.stdout).contains("64G") && line("max-file-size", in: run.stdout).contains("[default]"))
        #expect(line("metrics-listen", in: run.stdout).contains("(unset)"))

        // The same in JSON, and a flag that turns a file's boolean back.
        try scratch.write("gateway.json", Array(#"{"port": 7001, "direct-io": false, "min-free-space": "2G"}"#.utf8))
        let json = try await serve(["--config", scratch.path("gateway.json"), "--direct-io", "--print-config"], in: scratch)
        #expect(json.status == 0, "\(json.stderr)")
        #expect(line("port", in: json.stdout).contains("7001"))
        #expect(line("min-free-space", in: json.stdout).contains("2G"))
        #expect(line("direct-io", in: json.stdout).contains("true") && line("direct-io", in: json.stdout).contains("[flag --direct-io]"))

        // SAFECHAT_CONFIG names the file when --config does not.
        let named = try await serve(["--print-config"], environment: ["SAFECHAT_CONFIG": scratch.path("gateway.json")], in: scratch)
        #expect(line("port", in: named.stdout).contains("7001"), "\(named.stderr)")
    }

    @Test func unknownKeysAndBadValuesAreRefusedNamingTheKey() async throws {
        let scratch = try Scratch()
        func refused(_ file: (name: String, text: String)?, _ arguments: [String] = [], environment: [String: String] = [:],
                     naming expected: [String]) async throws {
            var arguments = arguments
            if let file {
                try scratch.write(file.name, Array(file.text.utf8))
                arguments += ["--config", scratch.path(file.name)]
            }
            // Without --print-config: the gateway itself must refuse to start (it would otherwise
            // bind and run until killed).
            let run = try await serve(arguments + ["--port", "0", "--data-dir", scratch.path("data")], environment: environment, in: scratch)
            #expect(run.status == 78, "\(arguments) \(environment): \(run.stderr)")
            let lines = run.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(run.stderr)")
            for text in expected { #expect(run.stderr.contains(text), "\(arguments) \(environment): \(run.stderr)") }
            #expect(!scratch.exists("data"), "a refused configuration changes nothing")
        }
        try await refused(("typo.yaml", "prot: 8080\n"), naming: ["unknown key \"prot\""])
        try await refused(("typo.json", #"{"port": 8080, "quotaa": "1G"}"#), naming: ["unknown key \"quotaa\""])
        try await refused(("nested.json", #"{"port": {"value": 8080}}"#), naming: ["port", "nested.json"])
        try await refused(("bad.json", #"{"port": "eighty"}"#), naming: ["port", "config file", "whole number"])
        try await refused(("bad.yaml", "port: 70000\n"), naming: ["port", "0 to 65535"])
        try await refused(("size.yaml", "quota: lots\n"), naming: ["quota", "size"])
        try await refused(("list.yaml", "trusted-proxies: 10.0.0.1,not-an-address\n"), naming: ["trusted-proxies"])
        try await refused(("broken.json", #"{"port": "#), naming: ["broken.json", "not valid JSON"])
        try await refused(("array.json", "[1, 2]"), naming: ["array.json", "one object"])
        try await refused(("settings.toml", "port = 1\n"), naming: [".json, .yaml or .yml"])
        try await refused(nil, ["--config", scratch.path("missing.yaml")], naming: ["missing.yaml"])
        try await refused(nil, environment: ["SAFECHAT_PORT": "abc"], naming: ["port", "SAFECHAT_PORT"])
        try await refused(nil, environment: ["SAFECHAT_LOG_FORMAT": "xml"], naming: ["log-format", "SAFECHAT_LOG_FORMAT", "\"json\""])
        try await refused(nil, environment: ["SAFECHAT_DIRECT_IO": "perhaps"], naming: ["direct-io"])
        try await refused(nil, ["--metrics-listen", "9090"], naming: ["metrics-listen", "flag --metrics-listen", "HOST:PORT"])
        try await refused(nil, ["--shutdown-grace", "0"], naming: ["shutdown-grace"])
        try await refused(nil, ["--tls-cert", "cert.pem"], naming: ["tls-cert and tls-key go together"])
        try await refused(nil, environment: ["SAFECHAT_BLOB_STORE": "s3://bucket"], naming: ["blob-store", "s3-endpoint"])
        // A file far too large is refused before it is read.
        try await refused(("huge.json", "{\"port\": 1" + String(repeating: " ", count: 2 << 20) + "}"), naming: ["huge.json", "at most"])
    }

    @Test func printConfigRedactsSecrets() async throws {
        let scratch = try Scratch()
        let run = try await serve(["--database", "postgres://safechat:hunter2@db.internal/safechat", "--print-config"],
                            environment: ["PGPASSWORD": "s3cret-pg", "AWS_SECRET_ACCESS_KEY": "s3cret-aws"], in: scratch)
        #expect(run.status == 0, "\(run.stderr)")
        let text = String(decoding: run.stdout, as: UTF8.self)
        #expect(!text.contains("hunter2") && !text.contains("s3cret-pg") && !text.contains("s3cret-aws"), "\(text)")
        #expect(line("database", in: run.stdout).contains("postgres://safechat:<redacted>@db.internal/safechat"), "\(text)")
        #expect(line("PGPASSWORD", in: run.stdout).contains("<redacted>"))
        #expect(line("AWS_SESSION_TOKEN", in: run.stdout).contains("(not set)"))
    }

    /// docs/OPERATIONS.md's reference is generated from the definitions behind `--help`: each
    /// setting's help text is in both, and the table in the document is exactly what the build
    /// prints today.
    @Test func theConfigReferenceInTheDocsIsGeneratedFromTheDefinitions() async throws {
        let scratch = try Scratch()
        let reference = try await serve(["--config-reference"], in: scratch)
        #expect(reference.status == 0)
        let table = String(decoding: reference.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let docs = try String(contentsOfFile: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/OPERATIONS.md").path, encoding: .utf8)
        #expect(docs.contains(table), "regenerate the table in docs/OPERATIONS.md with `safechat serve --config-reference`")
        let help = try await CLI.run(["serve", "--help"], in: scratch.url)
        let helpText = String(decoding: help.stdout, as: UTF8.self).split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for row in table.split(separator: "\n").dropFirst(2) {
            let key = row.split(separator: "`")[1]
            #expect(helpText.contains("--\(key)"), "--help lacks --\(key)")
        }
        #expect(table.split(separator: "\n").count >= 30)
    }
}
