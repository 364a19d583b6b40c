/*
 * HMAC-SHA256 of the gateway's signatures (producers/hmac.h) against the
 * test vectors of RFC 4231 section 4, and the signed text of
 * docs/command-contract.md "HTTP gateway": method \n path \n timestamp \n
 * body.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "hmac.h"

typedef struct {
        int tc;                 /* RFC 4231 test case */
        unsigned char key_byte; /* 0: key is key_text */
        size_t key_len;
        const char *key_text;
        unsigned char data_byte; /* 0: data is data_text */
        size_t data_len;
        const char *data_text;
        const char *hex;  /* HMAC-SHA-256 */
        size_t hex_bytes; /* compared bytes (test case 5 truncates) */
} vector_t;

static const vector_t vectors[] = {
        { 1, 0x0b, 20, NULL, 0, 0, "Hi There",
          "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
          32 },
        { 2, 0, 4, "Jefe", 0, 0, "what do ya want for nothing?",
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
          32 },
        { 3, 0xaa, 20, NULL, 0xdd, 50, NULL,
          "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
          32 },
        { 4, 1, 25, NULL, 0xcd, 50, NULL, /* key 0x01..0x19 */
          "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
          32 },
        { 5, 0x0c, 20, NULL, 0, 0, "Test With Truncation",
          "a3b6167473100ee06e0c796c2955552b", 16 },
        { 6, 0xaa, 131, NULL, 0, 0,
          "Test Using Larger Than Block-Size Key - Hash Key First",
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
          32 },
        { 7, 0xaa, 131, NULL, 0, 0,
          "This is a test using a larger than block-size key and a larger than "
          "block-size data. The key needs to be hashed before being used by "
          "the "
          "HMAC algorithm.",
          "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
          32 },
};

static void fill(const vector_t *v, unsigned char *key, unsigned char *data,
                 size_t *data_len) {
        size_t i;
        for (i = 0; i < v->key_len; i++)
                key[i] = v->key_text  ? (unsigned char)v->key_text[i]
                         : v->tc == 4 ? (unsigned char)(i + 1)
                                      : v->key_byte;
        if (v->data_text) {
                *data_len = strlen(v->data_text);
                memcpy(data, v->data_text, *data_len);
        } else {
                *data_len = v->data_len;
                memset(data, v->data_byte, v->data_len);
        }
}

#define N_VECTORS (sizeof(vectors) / sizeof(vectors[0]))

/* Criterion's parameterised tests cannot carry these pointers into the
 * test process, so each test walks the table. */
static void check_rfc4231(const vector_t *v) {
        unsigned char key[256], data[256], mac[ORDO_HMAC_SHA256_LEN];
        char hex[ORDO_HMAC_SHA256_HEX];
        size_t data_len;
        ordo_hmac_part_t part;

        fill(v, key, data, &data_len);
        part.data = data;
        part.len = data_len;
        cr_assert_eq(ordo_hmac_sha256(key, v->key_len, &part, 1, mac), 0);
        ordo_hex(mac, sizeof(mac), hex);
        cr_assert_eq(strncmp(hex, v->hex, 2 * v->hex_bytes), 0,
                     "RFC 4231 test case %d: got %s", v->tc, hex);
}

static void check_parts(const vector_t *v) {
        unsigned char key[256], data[256], one[32], split[32];
        size_t data_len, cut;
        ordo_hmac_part_t whole, parts[3];

        fill(v, key, data, &data_len);
        whole.data = data;
        whole.len = data_len;
        cut = data_len / 3;
        parts[0].data = data;
        parts[0].len = cut;
        parts[1].data = data + cut;
        parts[1].len = 0;
        parts[2].data = data + cut;
        parts[2].len = data_len - cut;
        cr_assert_eq(ordo_hmac_sha256(key, v->key_len, &whole, 1, one), 0);
        cr_assert_eq(ordo_hmac_sha256(key, v->key_len, parts, 3, split), 0);
        cr_assert_eq(memcmp(one, split, 32), 0);
}

Test(hmac, rfc4231) {
        size_t i;
        for (i = 0; i < N_VECTORS; i++)
                check_rfc4231(&vectors[i]);
}

Test(hmac, parts_are_concatenated) {
        size_t i;
        for (i = 0; i < N_VECTORS; i++)
                check_parts(&vectors[i]);
}

/* The contract: hex(HMAC-SHA256(secret, method "\n" path "\n" timestamp
 * "\n" body)), computed here from the whole text at once. */
Test(hmac, signature_covers_method_path_timestamp_body) {
        const char *body = "{\"type\":\"PlaceOrder\"}";
        char text[256], hex[ORDO_HMAC_SHA256_HEX], want[ORDO_HMAC_SHA256_HEX];
        unsigned char digest[32], mac[32];
        ordo_hmac_part_t part;

        snprintf(text, sizeof(text), "POST\n/v1/commands\n1700000000000\n%s",
                 body);
        part.data = text;
        part.len = strlen(text);
        cr_assert_eq(ordo_hmac_sha256("s3cret", 6, &part, 1, mac), 0);
        ordo_hex(mac, 32, want);
        cr_assert_eq(ordo_ingest_sign("s3cret", "POST", "/v1/commands",
                                      "1700000000000", body, strlen(body),
                                      digest, hex),
                     0);
        cr_assert_str_eq(hex, want);
        cr_assert_eq(memcmp(digest, mac, 32), 0);
        /* Every piece matters. */
        cr_assert_eq(ordo_ingest_sign("s3cret", "POST", "/v1/commands",
                                      "1700000000001", body, strlen(body), NULL,
                                      hex),
                     0);
        cr_assert_str_neq(hex, want);
        cr_assert_eq(ordo_ingest_sign("s3cret", "POST", "/v1/commands:batch",
                                      "1700000000000", body, strlen(body), NULL,
                                      hex),
                     0);
        cr_assert_str_neq(hex, want);
        cr_assert_eq(ordo_ingest_sign("s3cret", "POST", "/v1/commands",
                                      "1700000000000", body, strlen(body) - 1,
                                      NULL, hex),
                     0);
        cr_assert_str_neq(hex, want);
}

Test(hmac, hex_comparison) {
        unsigned char d[32];
        char hex[ORDO_HMAC_SHA256_HEX], up[ORDO_HMAC_SHA256_HEX];
        size_t i;

        for (i = 0; i < 32; i++)
                d[i] = (unsigned char)(i * 37 + 11);
        ordo_hex(d, 32, hex);
        cr_assert(ordo_hmac_hex_equal(d, hex));
        for (i = 0; i <= 64; i++)
                up[i] = (hex[i] >= 'a' && hex[i] <= 'f')
                            ? (char)(hex[i] - 'a' + 'A')
                            : hex[i];
        cr_assert(ordo_hmac_hex_equal(d, up), "hex digits in either case");
        hex[63] = hex[63] == '0' ? '1' : '0';
        cr_assert_not(ordo_hmac_hex_equal(d, hex));
        hex[63] = '\0';
        cr_assert_not(ordo_hmac_hex_equal(d, hex), "63 digits");
        cr_assert_not(ordo_hmac_hex_equal(d, ""));
        cr_assert_not(ordo_hmac_hex_equal(d, NULL));
}
