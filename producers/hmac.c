#include "hmac.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <string.h>

/* Fetching the algorithm takes a lock and a table look-up inside
 * libcrypto; it is done once and the handle, which is read-only and
 * thread-safe, kept for the life of the process. */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MAC *hmac_alg;

static void fetch_alg(void) {
        hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

int ordo_hmac_sha256(const void *key, size_t key_len,
                     const ordo_hmac_part_t *parts, size_t n,
                     unsigned char out[ORDO_HMAC_SHA256_LEN]) {
        EVP_MAC_CTX *ctx;
        OSSL_PARAM params[2];
        char digest[] = "SHA256";
        size_t i, len = 0;
        int ok;

        pthread_once(&once, fetch_alg);
        if (!hmac_alg || !(ctx = EVP_MAC_CTX_new(hmac_alg)))
                return -1;
        params[0] =
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0);
        params[1] = OSSL_PARAM_construct_end();
        /* An empty key is legal HMAC; libcrypto wants a non-NULL pointer. */
        ok = EVP_MAC_init(ctx, key_len ? key : (const void *)"", key_len,
                          params);
        for (i = 0; ok && i < n; i++)
                if (parts[i].len)
                        ok = EVP_MAC_update(ctx, parts[i].data, parts[i].len);
        ok = ok && EVP_MAC_final(ctx, out, &len, ORDO_HMAC_SHA256_LEN) &&
             len == ORDO_HMAC_SHA256_LEN;
        EVP_MAC_CTX_free(ctx);
        return ok ? 0 : -1;
}

void ordo_hex(const unsigned char *in, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        size_t i;
        for (i = 0; i < n; i++) {
                out[2 * i] = digits[in[i] >> 4];
                out[2 * i + 1] = digits[in[i] & 15];
        }
        out[2 * n] = '\0';
}

int ordo_ingest_sign(const char *secret, const char *method, const char *path,
                     const char *timestamp, const void *body, size_t body_len,
                     unsigned char digest[ORDO_HMAC_SHA256_LEN],
                     char hex[ORDO_HMAC_SHA256_HEX]) {
        unsigned char d[ORDO_HMAC_SHA256_LEN];
        ordo_hmac_part_t parts[] = {
                { method, strlen(method) },
                { "\n", 1 },
                { path, strlen(path) },
                { "\n", 1 },
                { timestamp, strlen(timestamp) },
                { "\n", 1 },
                { body, body_len },
        };
        if (ordo_hmac_sha256(secret, strlen(secret), parts,
                             sizeof(parts) / sizeof(parts[0]), d))
                return -1;
        if (digest)
                memcpy(digest, d, sizeof(d));
        if (hex)
                ordo_hex(d, sizeof(d), hex);
        return 0;
}

int ordo_hmac_hex_equal(const unsigned char digest[ORDO_HMAC_SHA256_LEN],
                        const char *hex) {
        char want[ORDO_HMAC_SHA256_HEX], got[ORDO_HMAC_SHA256_HEX];
        size_t i;

        if (!hex || strlen(hex) != 2 * ORDO_HMAC_SHA256_LEN)
                return 0;
        for (i = 0; i < 2 * ORDO_HMAC_SHA256_LEN; i++) {
                char c = hex[i];
                got[i] = (c >= 'A' && c <= 'F') ? (char)(c - 'A' + 'a') : c;
        }
        got[i] = '\0';
        ordo_hex(digest, ORDO_HMAC_SHA256_LEN, want);
        return CRYPTO_memcmp(want, got, 2 * ORDO_HMAC_SHA256_LEN) == 0;
}
