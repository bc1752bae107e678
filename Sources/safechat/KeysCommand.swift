import ArgumentParser
import Foundation
import SafeChatClient
import SafeChatKeys
import SealedStream

struct KeysCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Your identity: make it, show fingerprints, move it to another device.",
        discussion: """
            The identity (an Ed25519 signing key and an X25519 key that receives wrapped session keys) \
            is made on this device and kept 0600 in $XDG_DATA_HOME/safechat/identity.json (default \
            ~/.local/share/safechat); only its public bundle goes to the gateway. docs/KEYS.md specifies it.
            """,
        subcommands: [Init.self, FingerprintCommand.self, Verify.self, Trust.self, Export.self, Import.self])

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init", abstract: "Make this device's identity and publish it (login does this when there is none).")

        func run() async throws {
            try await reportingFailures("keys init") {
                let session = try ClientSession.load(from: ClientDirectory())
                let store = IdentityStore()
                let (identity, created) = try await Identities.ensure(for: session, store: store)
                if !created { try await GatewayClient(session: session).publish(identity.publicBundle.encoded()) }
                printError(created ? "identity created in \(store.path) and published" : "identity in \(store.path) published again")
                print(identity.publicBundle.fingerprint)
            }
        }
    }

    struct FingerprintCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "fingerprint", abstract: "Print your fingerprint (safety number), or USER's as the gateway serves it.",
            discussion: "Compare fingerprints out of band (in person, by phone): the same 30 digits mean the same key.")
        @Argument(help: "Another user's name (default: you).") var user: String?

        func run() async throws {
            try await reportingFailures("keys fingerprint") {
                guard let user else {
                    print(try IdentityStore().load().publicBundle.fingerprint)
                    return
                }
                let client = GatewayClient(session: try ClientSession.load(from: ClientDirectory()))
                let (bundle, trust) = try await Identities.trusted(user, from: client, pins: PinStore())
                let state = switch trust {
                case .newlyPinned: "pinned now (first use): verify it with \(user) out of band, then `safechat keys verify \(user) FINGERPRINT`"
                case .pinned(verified: true): "verified"
                case .pinned(verified: false): "pinned, not verified"
                }
                print(bundle.fingerprint)
                printError("\(user): \(state)")
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify", abstract: "Mark USER's pinned key verified, after comparing FINGERPRINT with them out of band.")
        @Argument(help: "The user.") var user: String
        @Argument(help: "The 30 digits they read to you (spaces optional).") var fingerprint: [String]

        func run() async throws {
            try await reportingFailures("keys verify") {
                guard let typed = Fingerprint(typed: fingerprint.joined()) else { throw CLIError(description: "a fingerprint is 30 digits") }
                let client = GatewayClient(session: try ClientSession.load(from: ClientDirectory()))
                _ = try await Identities.trusted(user, from: client, pins: PinStore())
                try PinStore().verify(user, fingerprint: typed)
                printError("\(user)'s key is verified")
            }
        }
    }

    struct Trust: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "trust", abstract: "Accept USER's changed key, giving the FINGERPRINT they confirmed to you out of band.",
            discussion: "Only a key with exactly that fingerprint is pinned (and marked verified); if the gateway serves another, nothing changes.")
        @Argument(help: "The user.") var user: String
        @Argument(help: "The 30 digits they read to you (spaces optional).") var fingerprint: [String]

        func validate() throws {
            guard Fingerprint(typed: fingerprint.joined()) != nil else {
                throw ValidationError("give the 30-digit fingerprint \(user) confirmed to you: `safechat keys trust \(user) FINGERPRINT`")
            }
        }

        func run() async throws {
            try await reportingFailures("keys trust") {
                let typed = Fingerprint(typed: fingerprint.joined())!
                let bundle = try await Identities.fetch(user, from: GatewayClient(session: try ClientSession.load(from: ClientDirectory())))
                guard bundle.fingerprint == typed else {
                    throw ClientError.refused("the gateway serves \(user)'s key with fingerprint \(bundle.fingerprint), not the \(typed) you "
                                              + "checked with them; nothing was pinned")
                }
                try PinStore().trust(user, bundle, verified: true)
                print(bundle.fingerprint)
                printError("\(user)'s key with that fingerprint is now pinned and verified")
            }
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export", abstract: "Write your identity to FILE, sealed under a passphrase, for another device.",
            discussion: "PBKDF2-HMAC-SHA256 (600 000 iterations) and AES-256-GCM. The passphrase is read from the terminal (twice) or from stdin.")
        @Argument(help: "The export file to create (never overwritten).") var file: String

        func run() async throws {
            try await reportingFailures("keys export") {
                let identity = try IdentityStore().load()
                let passphrase = try readPassword(prompt: "Passphrase for the export: ", confirm: true)
                guard passphrase.utf8.count >= 10 else { throw CLIError(description: "choose a passphrase of at least 10 characters") }
                let sealed = try IdentityFile.export(identity, passphrase: passphrase)
                let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw FileError(path: file, operation: "create", errno: errno) }
                defer { close(fd) }
                let sink = FileSink(descriptor: fd, path: file)
                try sink.write(sealed)
                try sink.sync()
                printError("identity exported to \(file); import it with `safechat keys import \(file)`")
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import", abstract: "Bring your identity from an export FILE to this device.",
            discussion: "The passphrase is read from the terminal or from stdin. An identity already on this device is never replaced.")
        @Argument(help: "A file made by `safechat keys export`.") var file: String

        func run() async throws {
            try await reportingFailures("keys import") {
                guard let data = FileManager.default.contents(atPath: file), data.count <= 16_384 else {
                    throw CLIError(description: "cannot read \(file) (or it is larger than an export can be)")
                }
                let passphrase = try readPassword(prompt: "Passphrase of the export: ")
                let identity = try IdentityFile.import(Array(data), passphrase: passphrase)
                if let session = try? ClientSession.load(from: ClientDirectory()), let id = session.userID,
                   id != Secrets.hex(identity.userID) {
                    throw CLIError(description: "this export is the identity of another account than \(session.user)'s")
                }
                let store = IdentityStore()
                try store.create(identity)
                printError("identity imported to \(store.path)")
                print(identity.publicBundle.fingerprint)
            }
        }
    }
}
