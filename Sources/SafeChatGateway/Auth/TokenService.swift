import Foundation
import JWTKit
import SafeChatAPI
import SealedFormat

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
        /// The account's token generation when issued; a password change moves it on.
        var gen: Int
        /// The token's own id (128 random bits, hex), by which it is revoked alone (POST /logout).
        /// Tokens issued before ids existed have none.
        var jti: IDClaim?

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

    public func issue(for user: UserID, generation: Int, now: Date = Date()) async throws -> (token: String, expiresAt: Date) {
        let expires = now.addingTimeInterval(lifetime)
        let claims = Claims(sub: .init(value: user.value), iss: .init(value: issuer), aud: .init(value: [audience]),
                            iat: .init(value: now), nbf: .init(value: now.addingTimeInterval(-5)), exp: .init(value: expires),
                            gen: generation, jti: .init(value: Secrets.randomHex(16)))
        return (try await keys.sign(claims), expires)
    }

    /// What a token claims, if it is an HS256 token signed with our key, from us, for us, and within
    /// its validity; nil otherwise. Whether that account still exists at that generation is the user
    /// store's to say, and whether the token was revoked alone, ``TokenRevocations``'.
    public func verify(_ token: String) async -> TokenClaims? {
        // Refuse every algorithm but HS256 ("none" included) before the library sees the token.
        guard token.utf8.count < 4096, let headerPart = token.split(separator: ".", omittingEmptySubsequences: false).first,
              let headerData = Self.base64URLDecode(headerPart),
              let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              header["alg"] as? String == "HS256", header["crit"] == nil
        else { return nil }
        guard let claims = try? await keys.verify(token, as: Claims.self),
              claims.iss.value == issuer, (try? claims.aud.verifyIntendedAudience(includes: audience)) != nil,
              let user = UserID(claims.sub.value)
        else { return nil }
        return TokenClaims(user: user, generation: claims.gen, id: claims.jti?.value, expires: claims.exp.value)
    }

    static func base64URLDecode(_ text: some StringProtocol) -> Data? {
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64)
    }

    private static func loadOrCreateKey(at path: String) throws -> [UInt8] {
        if let data = FileManager.default.contents(atPath: path) {
            guard let key = Secrets.bytes(fromHex: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)),
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

/// What a verified token says: its account, the account's token generation it was issued under,
/// its own id (nil for tokens issued before ids existed) and its expiry.
public struct TokenClaims: Sendable, Equatable {
    public let user: UserID
    public let generation: Int
    public let id: String?
    public let expires: Date

    public init(user: UserID, generation: Int, id: String?, expires: Date) {
        self.user = user
        self.generation = generation
        self.id = id
        self.expires = expires
    }
}
