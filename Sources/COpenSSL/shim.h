// The OpenSSL 3 EVP surface SafeChat uses. Every primitive (AES-256-GCM, HKDF-SHA256, SHA-256,
// RAND_bytes, CRYPTO_memcmp) comes from here; nothing is hand-written.
#ifndef SAFECHAT_COPENSSL_SHIM_H
#define SAFECHAT_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#endif
