import Configuration
import Foundation
import Synchronization
import Yams

/// Where one value of `serve`'s configuration came from.
enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    case flag(String)
    case environment(String)
    case file(String)
    case defaultValue

    /// The source as it concerns `setting` (its flag, its variable).
    func naming(_ setting: ServeSetting) -> SettingSource {
        switch self {
        case .flag: .flag(setting.key)
        case .environment: .environment(setting.environmentName)
        default: self
        }
    }

    var description: String {
        switch self {
        case .flag(let name): "flag --\(name)"
        case .environment(let name): "environment \(name)"
        case .file(let path): "config file \(path)"
        case .defaultValue: "default"
        }
    }
}

/// A configuration refused at start: one line naming the key, where its value came from and what
/// it takes.
struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
}

/// `serve`'s effective configuration, resolved with swift-configuration from, in increasing
/// precedence, the defaults in ``ServeSettings``, a config file (JSON or YAML), the environment
/// (`SAFECHAT_*`) and flags. Every value is checked against its setting's kind whatever its source;
/// a config file key that is no setting is refused, not ignored, so that a typo cannot silently
/// leave a default in force.
struct ServeConfiguration: Sendable {
    struct Entry: Sendable {
        let setting: ServeSetting
        /// nil: the setting is unset (it has no default and no source gave it).
        let value: ConfigContent?
        let source: SettingSource
    }

    /// One per setting, in the order of ``ServeSettings/all``.
    let entries: [Entry]

    /// A config file larger than this is refused before it is read.
    static let maximumFileSize = 1 << 20

    static func resolve(flags: [String: ConfigContent], environment: [String: String], configFile: String?) async throws -> ServeConfiguration {
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: Dictionary(uniqueKeysWithValues: flags.map {
                (AbsoluteConfigKey([$0.key]), ConfigValue($0.value, isSecret: false))
            })),
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: ConfigKey(["safechat"])),
        ]
        // Each provider's source, by position; flag and variable names are filled in per setting.
        var sources: [SettingSource] = [.flag(""), .environment("")]
        if let configFile {
            providers.append(try await fileProvider(configFile))
            sources.append(.file(configFile))
        }
        providers.append(InMemoryProvider(name: "defaults", values: Dictionary(uniqueKeysWithValues: ServeSettings.all.compactMap { setting in
            setting.defaultValue.map { (AbsoluteConfigKey([setting.key]), ConfigValue($0, isSecret: false)) }
        })))
        sources.append(.defaultValue)
        // Every source's value is checked, not only the one in force: a bad value in the file is
        // refused even while a flag overrides it, since the file is wrong all the same.
        for (index, provider) in providers.enumerated().dropLast() {
            let recorder = LookupRecorder()
            let reader = ConfigReader(provider: provider, accessReporter: recorder)
            for setting in ServeSettings.all {
                let named = sources[index].naming(setting)
                let value: ConfigContent?
                do { value = try Self.lookUp(setting, in: reader, recorder: recorder) } catch { throw badValue(setting, from: named) }
                if let value, !setting.accepts(value) { throw badValue(setting, from: named) }
            }
        }
        let lookups = LookupRecorder()
        let reader = ConfigReader(providers: providers, accessReporter: lookups)
        var entries: [Entry] = []
        for setting in ServeSettings.all {
            // Each source was checked above, so this lookup cannot fail.
            let value = try? Self.lookUp(setting, in: reader, recorder: lookups)
            let source = lookups.lastAnsweringProvider.map { sources[$0] } ?? .defaultValue
            entries.append(Entry(setting: setting, value: value ?? nil, source: source.naming(setting)))
        }
        return ServeConfiguration(entries: entries)
    }

    /// The setting's value in `reader` (made with `recorder`): nil when no provider has it;
    /// throws when one has it in a form that does not convert to the setting's type.
    private static func lookUp(_ setting: ServeSetting, in reader: ConfigReader, recorder: LookupRecorder) throws -> ConfigContent? {
        let key = ConfigKey([setting.key])
        do {
            switch setting.kind {
            case .whole: return .int(try reader.requiredInt(forKey: key))
            case .flag: return .bool(try reader.requiredBool(forKey: key))
            case .text, .size, .listenAddress, .choice, .addressList: return .string(try reader.requiredString(forKey: key))
            }
        } catch {
            if recorder.lastAnsweringProvider == nil { return nil }
            throw error
        }
    }

    private static func badValue(_ setting: ServeSetting, from source: SettingSource) -> ConfigurationError {
        ConfigurationError(description: "\(setting.key) (from \(source)) takes \(setting.expected)")
    }

    /// The config file's provider, after checking that the file is small, parses, and holds only
    /// known keys with single values.
    private static func fileProvider(_ path: String) async throws -> any ConfigProvider {
        let format: String
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "json": format = "json"
        case "yaml", "yml": format = "yaml"
        default: throw ConfigurationError(description: "config file \(path): name it .json, .yaml or .yml so that its format is known")
        }
        let attributes: [FileAttributeKey: Any]
        do { attributes = try FileManager.default.attributesOfItem(atPath: path) } catch {
            throw ConfigurationError(description: "config file \(path) cannot be read: \((error as NSError).localizedDescription)")
        }
        guard attributes[.type] as? FileAttributeType == .typeRegular, let size = attributes[.size] as? Int, size <= maximumFileSize else {
            throw ConfigurationError(description: "config file \(path) is not a regular file of at most \(maximumFileSize) bytes")
        }
        guard let data = FileManager.default.contents(atPath: path), data.count <= maximumFileSize else {
            throw ConfigurationError(description: "config file \(path) cannot be read")
        }
        let top: Any?
        do {
            top = format == "json" ? try JSONSerialization.jsonObject(with: data) : try Yams.load(yaml: String(decoding: data, as: UTF8.self))
        } catch {
            throw ConfigurationError(description: "config file \(path) is not valid \(format.uppercased()): \(error)")
        }
        guard let table = top as? [String: Any] else {
            throw ConfigurationError(description: "config file \(path) must hold one \(format == "json" ? "object" : "mapping") of settings")
        }
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {
            guard let setting = ServeSettings.byKey[key] else {
                throw ConfigurationError(description: "config file \(path): unknown key \"\(key.prefix(100))\" (the keys are serve's long flag names; see --help)")
            }
            guard value is String || value is NSNumber || value is Bool || value is Int || value is Double else {
                throw badValue(setting, from: .file(path))
            }
        }
        let location = ConfigReader(provider: InMemoryProvider(values: ["filePath": .init(.string(path), isSecret: false)]))
        return format == "json"
            ? try await FileProvider<JSONSnapshot>(config: location)
            : try await FileProvider<YAMLSnapshot>(config: location)
    }

    func entry(_ setting: ServeSetting) -> Entry { entries.first { $0.setting.key == setting.key }! }

    func string(_ setting: ServeSetting) -> String? {
        if case .string(let value) = entry(setting).value { return value }
        return nil
    }
    func int(_ setting: ServeSetting) -> Int? {
        if case .int(let value) = entry(setting).value { return value }
        return nil
    }
    func bool(_ setting: ServeSetting) -> Bool {
        if case .bool(let value) = entry(setting).value { return value }
        return false
    }
    /// A size setting's bytes (checked at resolution).
    func size(_ setting: ServeSetting) -> Int64? { string(setting).flatMap(parseByteCount) }

    /// `--print-config`: each setting, its effective value and where it came from. A password in
    /// a URL is replaced by `<redacted>`; credentials that only come from the environment or files
    /// (AWS_*, PGPASSWORD) are named with whether they are set, never shown.
    func printed(environment: [String: String]) -> String {
        let width = entries.map(\.setting.key.count).max() ?? 0
        var lines = entries.map { entry in
            let value: String = switch entry.value {
            case .string(let text): Self.redactingURLPassword(text)
            case .int(let number): "\(number)"
            case .bool(let flag): "\(flag)"
            case nil: "(unset)"
            default: "?"
            }
            return "\(entry.setting.key.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)  [\(entry.source)]"
        }
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "PGPASSWORD"] {
            lines.append("\(name.padding(toLength: max(width, name.count), withPad: " ", startingAt: 0))  \(environment[name] == nil ? "(not set)" : "<redacted>")  [environment \(name)]")
        }
        return lines.joined(separator: "\n")
    }

    static func redactingURLPassword(_ text: String) -> String {
        guard var parts = URLComponents(string: text), parts.password != nil else { return text }
        parts.password = "redacted"
        return parts.string?.replacingOccurrences(of: ":redacted@", with: ":<redacted>@") ?? "<redacted>"
    }

    /// The config reference in docs/OPERATIONS.md, made from the same definitions as `--help`.
    static func reference() -> String {
        var lines = [
            "| Key (flag `--KEY`) | Environment | Default | Takes | Meaning |",
            "|---|---|---|---|---|",
        ]
        for setting in ServeSettings.all {
            let defaultText: String = switch setting.defaultValue {
            case .string(let text): "`\(text)`"
            case .int(let number): "`\(number)`"
            case .bool(let flag): "`\(flag)`"
            default: "unset"
            }
            lines.append("| `\(setting.key)` | `\(setting.environmentName)` | \(defaultText) | \(setting.expected) | \(setting.help.replacingOccurrences(of: "|", with: "\\|")) |")
        }
        return lines.joined(separator: "\n")
    }
}

extension ServeSetting {
    /// Whether a value of the right type is also of the right form.
    func accepts(_ value: ConfigContent) -> Bool {
        switch (kind, value) {
        case (.whole(let range), .int(let number)): range.contains(number)
        case (.flag, .bool): true
        case (.text, .string(let text)): !text.isEmpty && text.utf8.count <= 4096 && !text.contains("\0")
        case (.size, .string(let text)): parseByteCount(text).map { $0 <= Int64(Int.max) } == true
        case (.listenAddress, .string(let text)): parseListenAddress(text) != nil
        case (.choice(let words), .string(let text)): words.contains(text)
        case (.addressList, .string(let text)): Self.addresses(text) != nil
        default: false
        }
    }
}

extension ServeSetting {
    /// The addresses of an address list, or nil if one is not an IPv4 or IPv6 address.
    static func addresses(_ text: String) -> Set<String>? {
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        guard !parts.isEmpty, parts.count <= 64 else { return nil }
        for part in parts {
            var v4 = in_addr(), v6 = in6_addr()
            guard inet_pton(AF_INET, part, &v4) == 1 || inet_pton(AF_INET6, part, &v6) == 1 else { return nil }
        }
        return Set(parts)
    }
}

/// Remembers which provider answered the last lookup (with a value or an error): the value's source.
private final class LookupRecorder: AccessReporter, Sendable {
    private let last = Mutex<Int?>(nil)
    var lastAnsweringProvider: Int? { last.withLock { $0 } }

    func report(_ event: AccessEvent) {
        let answered: Bool = switch event.providerResults.last?.result {
        case .success(let lookup): lookup.value != nil
        case .failure: true
        case nil: false
        }
        last.withLock { $0 = answered ? event.providerResults.count - 1 : nil }
    }
}
