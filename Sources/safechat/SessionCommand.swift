import ArgumentParser
import Foundation
import SafeChatClient
import SafeChatKeys

/// The SessionClient for the logged-in account and this device's identity.
private func sessionClient() throws -> SessionClient {
    SessionClient(session: try ClientSession.load(from: ClientDirectory()), identity: try IdentityStore().load())
}

struct SessionCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "Sessions: a group of people, the files sent to them, under one key per epoch.",
        discussion: """
            Every change of members makes a new epoch with a new key, signed by the member who made it \
            and wrapped (HPKE) for each member; clients verify the whole log from epoch 0 against the \
            keys they pinned, so the gateway cannot add anyone unseen. docs/KEYS.md specifies it.
            """,
        subcommands: [Create.self, Show.self, Add.self, Remove.self, Leave.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a session; prints its id on stdout.")
        @Argument(help: "A name for it (sealed under the session key: members read it, the gateway cannot).") var name: String
        @Option(help: "The other members, comma-separated user names.") var with: String = ""

        func run() async throws {
            try await reportingFailures("session create") {
                let members = with.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                print(try await sessionClient().create(name: name, with: members))
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Members, their fingerprints and trust, and the epoch.")
        @Argument(help: "The session id.") var id: String

        func run() async throws {
            try await reportingFailures("session show") {
                let client = try sessionClient()
                let chain = try await client.verifiedChain(id)
                let current = chain.last!
                let name = try await client.name(id)
                print("session \(id)\(name.map { " (\($0))" } ?? "") at epoch \(current.epoch), log verified from epoch 0")
                let pins = PinStore()
                for member in current.members {
                    let fingerprint = Fingerprint(signingKey: try Ed25519PublicKey(rawRepresentation: member.signingKey))
                    let trust = member.name == client.user ? "you" : ((try? pins.pin(for: member.name))??.verified == true ? "verified" : "pinned, not verified")
                    print("  \(member.name.padding(toLength: 16, withPad: " ", startingAt: 0))  \(fingerprint)  \(trust)")
                }
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "add", abstract: "Add USER: a new epoch and key.")
        @Argument(help: "The session id.") var id: String
        @Argument(help: "The user to add.") var user: String
        @Flag(help: "Also give them the earlier epochs' keys, so they can open earlier files.") var shareHistory = false

        func run() async throws {
            try await reportingFailures("session add") {
                let epoch = try await sessionClient().add(id, user, shareHistory: shareHistory)
                printError("\(user) added; the session is at epoch \(epoch)")
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove USER: a new epoch whose key they never get.")
        @Argument(help: "The session id.") var id: String
        @Argument(help: "The user to remove.") var user: String

        func run() async throws {
            try await reportingFailures("session remove") {
                let epoch = try await sessionClient().remove(id, user)
                printError("\(user) removed; the session is at epoch \(epoch)")
            }
        }
    }

    struct Leave: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "leave", abstract: "Leave a session (the others get a new key).")
        @Argument(help: "The session id.") var id: String

        func run() async throws {
            try await reportingFailures("session leave") {
                let client = try sessionClient()
                _ = try await client.remove(id, client.user)
                printError("you left the session")
            }
        }
    }
}

struct SessionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sessions", abstract: "List your sessions: id, epoch, members, name.")

    func run() async throws {
        try await reportingFailures("sessions") {
            let login = try ClientSession.load(from: ClientDirectory())
            let client = SessionClient(session: login, identity: try IdentityStore().load())
            for entry in try await GatewayClient(session: login).sessions() {
                // A log that does not verify is listed as such, not skipped.
                let name: String
                do { name = try await client.name(entry.sessionID) ?? "" } catch { name = "(refused: \(error))" }
                print("\(entry.sessionID)  epoch \(entry.epoch)  \(entry.members) members  \(name)")
            }
        }
    }
}
