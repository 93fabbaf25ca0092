#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/err.h>
#include <openssl/crypto.h>

// OSSL_PARAM arrays are built from macros and stack arrays, which Swift cannot express well;
// these shims keep that C-shaped code in C.

/// A fresh HMAC-SHA256 context keyed with `key`, or NULL on failure. Free with barge_hmac_free.
static inline EVP_MAC_CTX *barge_hmac_sha256_new(const unsigned char *key, size_t key_len) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) return NULL;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (ctx == NULL) return NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    // A zero-length key is legal for HMAC; EVP wants a non-NULL pointer for it.
    static const unsigned char empty = 0;
    if (EVP_MAC_init(ctx, key_len ? key : &empty, key_len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static inline void barge_hmac_free(EVP_MAC_CTX *ctx) { EVP_MAC_CTX_free(ctx); }

/// The most recent OpenSSL error code on this thread, cleared; 0 if none.
static inline unsigned long barge_crypto_last_error(void) {
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    return e;
}

/// Constant-time comparison (CRYPTO_memcmp), for MACs.
static inline int barge_memcmp_consttime(const void *a, const void *b, size_t len) {
    return CRYPTO_memcmp(a, b, len);
}
