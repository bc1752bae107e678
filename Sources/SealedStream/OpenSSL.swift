import COpenSSL
import SealedFormat

/// Thin, allocation-free wrappers over OpenSSL 3's EVP API.
///
/// Nothing here implements a primitive: AES-256-GCM and HKDF-SHA256 come from libcrypto (digests,
/// randomness and constant-time comparison from SealedFormat's wrappers, also libcrypto). The wrappers take raw buffers so the
/// streaming pipeline can encrypt straight into its output records without extra copies.
package enum OpenSSL {
    /// Fetched once: `EVP_aes_256_gcm()` would re-fetch the implementation on every init, which
    /// contends on a global lock when all cores seal at once. Fetched algorithm objects are immutable
    /// and documented as safe to share between threads.
    nonisolated(unsafe) package static let aes256gcm: OpaquePointer = {
        guard let cipher = EVP_CIPHER_fetch(nil, "AES-256-GCM", nil) else {
            fatalError("OpenSSL has no AES-256-GCM implementation; is libcrypto 3 installed?")
        }
        return cipher
    }()

    /// AES-128-GCM, for HPKE's test vectors (RFC 9180 A.1); SafeChat itself seals with AES-256.
    nonisolated(unsafe) package static let aes128gcm: OpaquePointer = {
        guard let cipher = EVP_CIPHER_fetch(nil, "AES-128-GCM", nil) else {
            fatalError("OpenSSL has no AES-128-GCM implementation; is libcrypto 3 installed?")
        }
        return cipher
    }()

    static let gcmTagLength = 16
    static let gcmNonceLength = 12
    static let aes256KeyLength = 32

    /// Encrypts `plaintext` into `ciphertext` (same length; the two may be the same memory) and writes
    /// the 16-byte GCM tag to `tag`.
    package static func aesGCMSeal(
        key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer, ciphertext: UnsafeMutableRawPointer, tag: UnsafeMutableRawPointer,
        cipher: OpaquePointer = aes256gcm
    ) {
        precondition(key.count == Int(EVP_CIPHER_get_key_length(cipher)) && nonce.count == gcmNonceLength)
        precondition(plaintext.count <= Int(Int32.max) && aad.count <= Int(Int32.max))
        guard let ctx = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new: out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var outLength: Int32 = 0
        var ok = EVP_EncryptInit_ex2(ctx, cipher, key.bytes, nonce.bytes, nil) == 1
        if ok, aad.count > 0 {
            ok = EVP_EncryptUpdate(ctx, nil, &outLength, aad.bytes, Int32(aad.count)) == 1
        }
        if ok, plaintext.count > 0 {
            ok = EVP_EncryptUpdate(
                ctx, ciphertext.assumingMemoryBound(to: UInt8.self), &outLength,
                plaintext.bytes, Int32(plaintext.count)) == 1 && Int(outLength) == plaintext.count
        }
        if ok {
            ok = EVP_EncryptFinal_ex(ctx, ciphertext.assumingMemoryBound(to: UInt8.self) + plaintext.count, &outLength) == 1
        }
        if ok {
            ok = EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(gcmTagLength), tag) == 1
        }
        // Encryption with valid sizes cannot fail; if libcrypto says otherwise, emitting a record
        // would be worse than stopping.
        precondition(ok, "AES-256-GCM encryption failed inside OpenSSL")
    }

    /// Verifies `tag` and decrypts `ciphertext` into `plaintext` (which may be the same memory).
    /// Returns false, with `plaintext` holding unverified bytes the caller must discard, when the tag
    /// does not verify.
    package static func aesGCMOpen(
        key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer,
        ciphertext: UnsafeRawBufferPointer, tag: UnsafeRawBufferPointer, plaintext: UnsafeMutableRawPointer,
        cipher: OpaquePointer = aes256gcm
    ) -> Bool {
        let decryption = GCMDecryption()
        return decryption.begin(key: key, nonce: nonce, aad: aad, cipher: cipher)
            && decryption.update(ciphertext, into: plaintext)
            && decryption.finish(tag: tag)
    }

    /// HKDF-SHA256 (RFC 5869) extract-and-expand into `output`.
    static func hkdfSHA256(
        inputKey: UnsafeRawBufferPointer, salt: UnsafeRawBufferPointer, info: UnsafeRawBufferPointer,
        output: UnsafeMutableRawBufferPointer
    ) {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { fatalError("HKDF context: out of memory") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var ok = EVP_PKEY_derive_init(ctx) == 1
        ok = ok && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1
        if salt.count > 0 { ok = ok && EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt.bytes, Int32(salt.count)) == 1 }
        ok = ok && EVP_PKEY_CTX_set1_hkdf_key(ctx, inputKey.bytes, Int32(inputKey.count)) == 1
        if info.count > 0 { ok = ok && EVP_PKEY_CTX_add1_hkdf_info(ctx, info.bytes, Int32(info.count)) == 1 }
        var length = output.count
        ok = ok && EVP_PKEY_derive(ctx, output.baseAddress?.assumingMemoryBound(to: UInt8.self), &length) == 1
        precondition(ok && length == output.count, "HKDF-SHA256 failed inside OpenSSL")
    }

    /// One-shot AES-GCM of `plaintext` into ciphertext || tag, for small messages (wraps, exports,
    /// chat); the streaming pipeline uses the pointer-based form above.
    package static func gcmSeal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8],
                                cipher: OpaquePointer = aes256gcm) -> [UInt8] {
        var sealed = [UInt8](repeating: 0, count: plaintext.count + gcmTagLength)
        plaintext.withUnsafeBytes { pt in
            key.withUnsafeBytes { k in
                nonce.withUnsafeBytes { n in
                    aad.withUnsafeBytes { a in
                        sealed.withUnsafeMutableBytes { out in
                            aesGCMSeal(key: k, nonce: n, aad: a, plaintext: pt, ciphertext: out.baseAddress!,
                                       tag: out.baseAddress! + plaintext.count, cipher: cipher)
                        }
                    }
                }
            }
        }
        return sealed
    }

    /// Opens ciphertext || tag from ``gcmSeal(_:key:nonce:aad:cipher:)``; nil if it does not verify
    /// (nothing unverified is returned).
    package static func gcmOpen(_ sealed: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8],
                                cipher: OpaquePointer = aes256gcm) -> [UInt8]? {
        guard sealed.count >= gcmTagLength else { return nil }
        let bodyLength = sealed.count - gcmTagLength
        var plaintext = [UInt8](repeating: 0, count: bodyLength)
        let ok = sealed.withUnsafeBytes { ct in
            key.withUnsafeBytes { k in
                nonce.withUnsafeBytes { n in
                    aad.withUnsafeBytes { a in
                        plaintext.withUnsafeMutableBytes { out in
                            aesGCMOpen(key: k, nonce: n, aad: a, ciphertext: UnsafeRawBufferPointer(rebasing: ct[..<bodyLength]),
                                       tag: UnsafeRawBufferPointer(rebasing: ct[bodyLength...]),
                                       plaintext: out.baseAddress ?? UnsafeMutableRawPointer(mutating: ct.baseAddress!), cipher: cipher)
                        }
                    }
                }
            }
        }
        guard ok else {
            plaintext.withUnsafeMutableBytes { cleanse($0) }
            return nil
        }
        return plaintext
    }

    /// HKDF-Extract (RFC 5869 section 2.2) with SHA-256: the 32-byte PRK. An empty salt is
    /// HashLen zero bytes, as the RFC says.
    package static func hkdfExtract(salt: [UInt8], inputKey: [UInt8]) -> [UInt8] {
        hkdf(mode: EVP_PKEY_HKDEF_MODE_EXTRACT_ONLY, key: inputKey, salt: salt, info: [], length: 32)
    }

    /// HKDF-Expand (RFC 5869 section 2.3) with SHA-256: `length` bytes (at most 255 × 32) of `prk`.
    package static func hkdfExpand(prk: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        precondition(length > 0 && length <= 255 * 32)
        return hkdf(mode: EVP_PKEY_HKDEF_MODE_EXPAND_ONLY, key: prk, salt: [], info: info, length: length)
    }

    private static func hkdf(mode: Int32, key: [UInt8], salt: [UInt8], info: [UInt8], length: Int) -> [UInt8] {
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { fatalError("HKDF context: out of memory") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: length)
        var produced = length
        var ok = EVP_PKEY_derive_init(ctx) == 1
        ok = ok && EVP_PKEY_CTX_set_hkdf_mode(ctx, mode) == 1
        ok = ok && EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1
        if !salt.isEmpty { ok = ok && EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt, Int32(salt.count)) == 1 }
        // HPKE's labeled inputs are never empty; OpenSSL refuses an empty HKDF key.
        precondition(!key.isEmpty)
        ok = ok && EVP_PKEY_CTX_set1_hkdf_key(ctx, key, Int32(key.count)) == 1
        if !info.isEmpty { ok = ok && EVP_PKEY_CTX_add1_hkdf_info(ctx, info, Int32(info.count)) == 1 }
        ok = ok && EVP_PKEY_derive(ctx, &out, &produced) == 1
        precondition(ok && produced == length, "HKDF-SHA256 failed inside OpenSSL")
        return out
    }

    /// Overwrites secret bytes in a way the compiler may not optimise away.
    static func cleanse(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        OPENSSL_cleanse(base, buffer.count)
    }
}

extension UnsafeRawBufferPointer {
    /// The buffer as the `const unsigned char *` OpenSSL takes (a valid pointer even when empty).
    fileprivate var bytes: UnsafePointer<UInt8>? {
        baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}

/// One AES-256-GCM decryption fed in pieces: GCM is a stream mode, so ciphertext can be decrypted
/// as it arrives and the tag checked at the end. Whatever `update` wrote is unverified until
/// `finish` returns true; callers must not release it before. The context is reused from one
/// `begin` to the next.
final class GCMDecryption {
    private let ctx: OpaquePointer

    init() {
        guard let ctx = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new: out of memory") }
        self.ctx = ctx
    }

    deinit { EVP_CIPHER_CTX_free(ctx) }

    func begin(key: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer,
               cipher: OpaquePointer = OpenSSL.aes256gcm) -> Bool {
        precondition(key.count == Int(EVP_CIPHER_get_key_length(cipher)) && nonce.count == OpenSSL.gcmNonceLength)
        precondition(aad.count <= Int(Int32.max))
        guard EVP_DecryptInit_ex2(ctx, cipher, key.bytes, nonce.bytes, nil) == 1 else { return false }
        var outLength: Int32 = 0
        return aad.isEmpty || EVP_DecryptUpdate(ctx, nil, &outLength, aad.bytes, Int32(aad.count)) == 1
    }

    /// Decrypts `ciphertext` into `out` (same length; may be the same memory).
    func update(_ ciphertext: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) -> Bool {
        precondition(ciphertext.count <= Int(Int32.max))
        guard !ciphertext.isEmpty else { return true }
        var outLength: Int32 = 0
        return EVP_DecryptUpdate(ctx, out.assumingMemoryBound(to: UInt8.self), &outLength, ciphertext.bytes, Int32(ciphertext.count)) == 1
            && Int(outLength) == ciphertext.count
    }

    /// True only if `tag` authenticates everything given since `begin`.
    func finish(tag: UnsafeRawBufferPointer) -> Bool {
        guard tag.count == OpenSSL.gcmTagLength,
              EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(OpenSSL.gcmTagLength), UnsafeMutableRawPointer(mutating: tag.baseAddress)) == 1
        else { return false }
        // GCM produces no output at the end; the buffer only satisfies the API.
        var scratch: UInt8 = 0
        var outLength: Int32 = 0
        return EVP_DecryptFinal_ex(ctx, &scratch, &outLength) == 1
    }
}
