/*
 * ordo - request signatures of the ingest gateway: HMAC-SHA256 from
 * OpenSSL's libcrypto (docs/decisions/0003-libmicrohttpd.md says why a
 * library and not our own code), hex encoding, constant-time comparison.
 *
 * Tuned for one small request (a few hundred bytes) per call on any
 * thread: nothing is shared between calls but the HMAC algorithm handle,
 * which libcrypto allows to be used from many threads at once.
 */
#ifndef ORDO_HMAC_H
#define ORDO_HMAC_H

#include <stddef.h>

#define ORDO_HMAC_SHA256_LEN 32
#define ORDO_HMAC_SHA256_HEX (2 * ORDO_HMAC_SHA256_LEN + 1) /* with NUL */

/* One piece of the signed text; the pieces are concatenated. */
typedef struct ordo_hmac_part_s {
        const void *data;
        size_t len;
} ordo_hmac_part_t;

/* HMAC-SHA256(key, parts[0] || ... || parts[n-1]) into out.
 * 0 on success, -1 if libcrypto fails (no HMAC or SHA-256 provider). */
int ordo_hmac_sha256(const void *key, size_t key_len,
                     const ordo_hmac_part_t *parts, size_t n,
                     unsigned char out[ORDO_HMAC_SHA256_LEN]);

/* The gateway's signature of a request (docs/command-contract.md, "HTTP
 * gateway"): HMAC-SHA256(secret, method "\n" path "\n" timestamp "\n"
 * body). Writes the raw digest to digest (may be NULL) and its lower-case
 * hex to hex (may be NULL). 0 on success, -1 if libcrypto fails. */
int ordo_ingest_sign(const char *secret, const char *method, const char *path,
                     const char *timestamp, const void *body, size_t body_len,
                     unsigned char digest[ORDO_HMAC_SHA256_LEN],
                     char hex[ORDO_HMAC_SHA256_HEX]);

/* Lower-case hex of n bytes; out holds 2n + 1 bytes. */
void ordo_hex(const unsigned char *in, size_t n, char *out);

/* 1 if hex (upper or lower case, exactly 64 digits) is the digest, in time
 * that does not depend on where they differ; 0 otherwise. */
int ordo_hmac_hex_equal(const unsigned char digest[ORDO_HMAC_SHA256_LEN],
                        const char *hex);

#endif
