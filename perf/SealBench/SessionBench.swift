import Dispatch
import Foundation
import SafeChatKeys
import SealedStream

/// What a client does to create a session of `members` and to rotate it (a member removed: new key,
/// wrapped for everyone left), and to verify the resulting log, median of `runs`. Client-side work
/// only: the gateway stores an epoch in about a millisecond (see the registry figure).
func sessionBench(members: Int, runs: Int) throws {
    let identities = try (0..<members).map { _ in try Identity.generate(userID: Secrets.randomBytes(16)) }
    let entries = identities.enumerated().map { index, identity in
        (member: EpochDocument.Member(userID: identity.userID, name: "user\(index)", signingKey: identity.signingKey.publicKey.rawRepresentation),
         agreementKey: identity.agreementKey.publicKey)
    }
    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
    var create: [Double] = [], rotate: [Double] = [], verify: [Double] = [], open: [Double] = []
    for _ in 0..<max(1, runs) {
        let sessionID = Secrets.randomBytes(16)
        var e0: EpochDocument!, e1: EpochDocument!
        create.append(try seconds { e0 = try EpochDocument.make(sessionID: sessionID, epoch: 0, previous: nil, signer: identities[0], members: entries, key: SessionKey.random()) })
        rotate.append(try seconds {
            e1 = try EpochDocument.make(sessionID: sessionID, epoch: 1, previous: e0, signer: identities[0], members: Array(entries.dropLast()), key: SessionKey.random())
        })
        verify.append(try seconds { _ = try EpochChain.verify([e0, e1], sessionID: sessionID) { _ in true } })
        open.append(try seconds { _ = try e1.openKey(epoch: 1, for: identities[1]) })
    }
    func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
    print("session of \(members) members, median of \(max(1, runs)) runs (client side):")
    print(String(format: "  create (epoch 0: %d HPKE wraps + 1 signature)  %.1f ms", members, median(create) * 1000))
    print(String(format: "  rotate (epoch 1: %d wraps + 1 signature)       %.1f ms", members - 1, median(rotate) * 1000))
    print(String(format: "  verify the 2-epoch log                          %.1f ms", median(verify) * 1000))
    print(String(format: "  open one's own key                              %.2f ms", median(open) * 1000))
    print("  target < 1 s each: \(median(create) < 1 && median(rotate) < 1 ? "PASS" : "MISS")")
}
