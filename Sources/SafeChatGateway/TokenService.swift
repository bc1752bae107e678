import Foundation
import JWTKit
import SealedStream

/// Issues and checks the gateway's bearer tokens: HS256 JWTs (vapor/jwt-kit) signed with a 256-bit
/// key made at first start and kept in `signing.key` (mode 0600) in the data directory.
public struct TokenService: Sendable {
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var iss: IssuerClaim
        var aud: AudienceClaim
        var iat: IssuedAtClaim
        var nbf: NotBeforeClaim
        var exp: ExpirationClaim

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
            try nbf.verifyNotBefore()
        }
    }

    private let keys: JWTKeyCollection
    let issuer: String
    let audience: String
    let lifetime: TimeInterval

    public init(signingKeyPath: String, issuer: String, audience: String, lifetime: TimeInterval) async throws {
        let secret = try Self.loadOrCreateKey(at: signingKeyPath)
        keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        self.issuer = issuer
        self.audience = audience
        self.lifetime = lifetime
    }

    public func issue(for user: String, now: Date = Date()) async throws -> (token: String, expiresAt: Date) {
        let expires = now.addingTimeInterval(lifetime)
        let claims = Claims(sub: .init(value: user), iss: .init(value: issuer), aud: .init(value: [audience]),
                            iat: .init(value: now), nbf: .init(value: now.addingTimeInterval(-5)), exp: .init(value: expires))
        return (try await keys.sign(claims), expires)
    }

    /// The user a token names, if it is an HS256 token signed with our key, from us, for us, and
    /// within its validity; nil otherwise.
    public func verify(_ token: String) async -> String? {
        // Refuse every algorithm but HS256 ("none" included) before the library sees the token.
        guard token.utf8.count < 4096, let headerPart = token.split(separator: ".", omittingEmptySubsequences: false).first,
              let headerData = Self.base64URLDecode(headerPart),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              header["alg"] as? String == "HS256", header["crit"] == nil
        else { return nil }
        guard let claims = try? await keys.verify(token, as: Claims.self),
              claims.iss.value == issuer, (try? claims.aud.verifyIntendedAudience(includes: audience)) != nil
        else { return nil }
        return claims.sub.value
    }

    static func base64URLDecode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    private static func loadOrCreateKey(at path: String) throws -> [UInt8] {
        if let data = FileManager.default.contents(atPath: path) {
            guard let key = UserStore.fromHex(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
                  key.count == 32 else { throw FileError(path: path, operation: "read signing key (not 64 hex digits)", errno: EINVAL) }
            return key
        }
        let key = Secrets.randomBytes(32)
        let writer = try AtomicFileWriter(destination: path, permissions: 0o600)
        try writer.write(Array((Secrets.hex(key) + "\n").utf8))
        try writer.commit()
        return key
    }
}

/// Failed logins, throttled per account and per client address.
actor LoginThrottle {
    struct Entry { var failures: Int; var lockedUntil: Date }
    private var entries: [String: Entry] = [:]
    /// Failures allowed before a key is locked; each further failure doubles the lock (1 s to 15 min).
    let freeFailures = 5

    /// Seconds to wait before `keys` may try again, or nil.
    func retryAfter(_ keys: [String], now: Date = Date()) -> Int? {
        let wait = keys.compactMap { entries[$0]?.lockedUntil }.max().map { $0.timeIntervalSince(now) } ?? 0
        return wait > 0 ? Int(wait.rounded(.up)) : nil
    }

    func failed(_ keys: [String], now: Date = Date()) {
        if entries.count > 100_000 { entries = entries.filter { $0.value.lockedUntil > now } }
        for key in keys {
            var entry = entries[key] ?? Entry(failures: 0, lockedUntil: now)
            entry.failures += 1
            if entry.failures >= freeFailures {
                let seconds = min(900, pow(2, Double(entry.failures - freeFailures)))
                entry.lockedUntil = now.addingTimeInterval(seconds)
            }
            entries[key] = entry
        }
    }

    func succeeded(_ keys: [String]) {
        for key in keys { entries[key] = nil }
    }
}
