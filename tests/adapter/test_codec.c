/*
 * ordo - the Avro single-object codec (schemas/codec.h) against the Avro
 * specification (1.11, "Binary Encoding", "Single-object encoding",
 * "Parsing Canonical Form", "Schema Fingerprints"), against avro-c as an
 * independent implementation, and against hostile input.
 *
 * DESIGN.md, "Avro": one .avsc per message, namespace ordo, single-object
 * encoding (C3 01, the 8-byte CRC-64-AVRO fingerprint, the datum). A
 * message that cannot be decoded goes to dead-letters, so decoding must
 * refuse garbage cleanly and never crash.
 */
#include <criterion/criterion.h>
#include <avro.h>
#include <jansson.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "codec_samples.h"
#include "schemas_int.h"

#define BUF             4096
#define RANDOM_VARIANTS 200

static ordo_codec_t *codec;

static void setup(void) {
        char errstr[256];
        codec = ordo_codec_new(errstr, sizeof(errstr));
        cr_assert_not_null(codec, "%s", errstr);
}

static void teardown(void) {
        ordo_codec_destroy(codec);
}

TestSuite(codec, .init = setup, .fini = teardown);

static size_t encode_ok(const ordo_msg_t *m, uint8_t *buf) {
        char errstr[256] = "";
        size_t len = 0;
        ordo_err_t err =
            ordo_codec_encode(codec, m, buf, BUF, &len, errstr, sizeof(errstr));
        cr_assert_eq(err, ORDO_ERR_OK, "encode %s: %s",
                     ordo_msg_type_name(m->type), errstr);
        return len;
}

static ordo_err_t decode(const uint8_t *buf, size_t len, ordo_msg_t *out,
                         char *errstr, size_t errstr_size) {
        errstr[0] = '\0';
        return ordo_codec_decode(codec, buf, len, out, errstr, errstr_size);
}

/* Schema files against the field table: a .avsc cannot drift from
 * messages.h. avro-c parses each one, so each is also valid Avro. */

static const char *kind_avro(ordo_field_kind_t k) {
        switch (k) {
        case ORDO_FIELD_STRING:
                return "string";
        case ORDO_FIELD_LONG:
                return "long";
        case ORDO_FIELD_BOOL:
                return "boolean";
        case ORDO_FIELD_LONGS:
                return "array";
        }
        return "?";
}

static const char *schema_avro(avro_schema_t s) {
        if (is_avro_string(s))
                return "string";
        if (is_avro_int64(s))
                return "long";
        if (is_avro_boolean(s))
                return "boolean";
        if (is_avro_array(s))
                return is_avro_int64(avro_schema_array_items(s)) ? "array"
                                                                 : "array?";
        return avro_schema_type_name(s);
}

Test(codec, schemas_match_field_table) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                const char *name = ordo_msg_type_name(t);
                const char *json = ordo_schema_json(t);
                const ordo_field_t *f;
                avro_schema_t s;
                json_error_t jerr;
                json_t *root, *fields;
                size_t n, i;

                cr_assert_not_null(json, "%s has no .avsc", name);
                cr_assert_eq(
                    avro_schema_from_json_length(json, strlen(json), &s), 0,
                    "%s: avro-c: %s", name, avro_strerror());
                cr_assert(is_avro_record(s), "%s: not a record", name);
                cr_assert_str_eq(avro_schema_name(s), name);
                cr_assert_str_eq(avro_schema_namespace(s), "ordo");

                f = ordo_msg_fields(t, &n);
                cr_assert_eq(avro_schema_record_size(s), n,
                             "%s: %zu fields in .avsc, %zu in messages.h", name,
                             avro_schema_record_size(s), n);
                root = json_loads(json, 0, &jerr);
                cr_assert_not_null(root, "%s: %s", name, jerr.text);
                cr_assert(json_is_string(json_object_get(root, "doc")),
                          "%s: the record has no doc", name);
                fields = json_object_get(root, "fields");
                for (i = 0; i < n; i++) {
                        avro_schema_t fs =
                            avro_schema_record_field_get_by_index(s, (int)i);
                        json_t *jf = json_array_get(fields, i);
                        json_t *def = json_object_get(jf, "default");
                        cr_assert_str_eq(
                            avro_schema_record_field_name(s, (int)i), f[i].name,
                            "%s field %zu", name, i);
                        cr_assert_str_eq(schema_avro(fs), kind_avro(f[i].kind),
                                         "%s.%s", name, f[i].name);
                        /* Optional fields carry their default, so a reader
                         * of a newer schema can fill them (DESIGN.md,
                         * schema evolution); required ones carry none. */
                        if (f[i].required) {
                                cr_assert_null(def,
                                               "%s.%s: default on a "
                                               "required field",
                                               name, f[i].name);
                                continue;
                        }
                        cr_assert_not_null(def, "%s.%s: no default", name,
                                           f[i].name);
                        if (f[i].kind == ORDO_FIELD_STRING)
                                cr_assert_str_eq(json_string_value(def), "");
                        else if (f[i].kind == ORDO_FIELD_LONG)
                                cr_assert_eq(json_integer_value(def), f[i].def,
                                             "%s.%s", name, f[i].name);
                        else if (f[i].kind == ORDO_FIELD_LONGS) {
                                /* RULES.md: commission_bps default
                                 * [1000, 500] */
                                cr_assert_eq(json_array_size(def), 2);
                                cr_assert_eq(
                                    json_integer_value(json_array_get(def, 0)),
                                    1000);
                                cr_assert_eq(
                                    json_integer_value(json_array_get(def, 1)),
                                    500);
                        }
                }
                json_decref(root);
                avro_schema_decref(s);
        }
        cr_assert_null(ordo_schema_json(ORDO_MSG_NONE));
        cr_assert_null(ordo_schema_json(ORDO_MSG__COUNT));
        cr_assert_eq(ordo_schema_fingerprint(ORDO_MSG_NONE), 0);
}

/* Fingerprints */

Test(codec, crc64_avro_known_values) {
        /* CRC-64-AVRO of the canonical forms "null" and "int", as the
         * reference implementations compute them (Avro's Java
         * SchemaNormalization test data; fastavro agrees) */
        cr_assert_eq(ordo__crc64_avro("\"null\"", 6),
                     UINT64_C(7195948357588979594));
        cr_assert_eq(ordo__crc64_avro("\"int\"", 5),
                     UINT64_C(8247732601305521295));
        /* the empty input is the EMPTY constant of the spec */
        cr_assert_eq(ordo__crc64_avro("", 0), UINT64_C(0xc15d213aa4d7a795));
}

Test(codec, build_time_fingerprints_match_c) {
        int t, u;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                const char *pcf = ordo__schema_pcf(t);
                char want[64];
                cr_assert_not_null(pcf);
                cr_assert_eq(ordo__crc64_avro(pcf, strlen(pcf)),
                             ordo_schema_fingerprint(t), "%s",
                             ordo_msg_type_name(t));
                /* the canonical form: no whitespace, no doc, no default,
                 * the full name first */
                cr_assert_null(strpbrk(pcf, " \n\t"), "%s", pcf);
                cr_assert_null(strstr(pcf, "\"doc\""), "%s", pcf);
                cr_assert_null(strstr(pcf, "\"default\""), "%s", pcf);
                snprintf(want, sizeof(want), "{\"name\":\"ordo.%s\",",
                         ordo_msg_type_name(t));
                cr_assert_eq(strncmp(pcf, want, strlen(want)), 0, "%s", pcf);
                for (u = ORDO_MSG_NONE + 1; u < t; u++)
                        cr_assert_neq(ordo_schema_fingerprint(t),
                                      ordo_schema_fingerprint(u));
        }
}

Test(codec, header_is_marker_and_little_endian_fingerprint) {
        uint8_t buf[BUF];
        ordo_msg_t m;
        int t, i;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                uint64_t fp = ordo_schema_fingerprint(t);
                ordo_sample_fill(&m, t, 0);
                encode_ok(&m, buf);
                cr_assert_eq(buf[0], 0xc3);
                cr_assert_eq(buf[1], 0x01);
                for (i = 0; i < 8; i++)
                        cr_assert_eq(buf[2 + i], (uint8_t)(fp >> (8 * i)));
        }
}

/* Round trips */

Test(codec, round_trip_every_type) {
        uint8_t buf[BUF], again[BUF];
        ordo_msg_t m, out;
        char errstr[256], why[512];
        unsigned v;
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                for (v = 0; v < ORDO_SAMPLE_EDGES + RANDOM_VARIANTS; v++) {
                        size_t len, len2;
                        ordo_sample_fill(&m, t, v);
                        len = encode_ok(&m, buf);
                        cr_assert_eq(
                            decode(buf, len, &out, errstr, sizeof(errstr)),
                            ORDO_ERR_OK, "%s v%u: %s", ordo_msg_type_name(t), v,
                            errstr);
                        cr_assert(ordo_sample_equal(&m, &out, why, sizeof(why)),
                                  "%s v%u: %s", ordo_msg_type_name(t), v, why);
                        /* whatever the table does not carry is zero, so
                         * the whole struct compares */
                        cr_assert_eq(memcmp(&m, &out, sizeof(m)), 0, "%s v%u",
                                     ordo_msg_type_name(t), v);
                        len2 = encode_ok(&out, again);
                        cr_assert_eq(len2, len);
                        cr_assert_eq(memcmp(buf, again, len), 0);
                }
        }
}

/* Hostile input */

Test(codec, truncated_input_is_refused_at_every_length) {
        uint8_t buf[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        unsigned v;
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++)
                for (v = 0; v < 3; v++) {
                        size_t len, cut;
                        ordo_sample_fill(&m, t, v);
                        len = encode_ok(&m, buf);
                        for (cut = 0; cut < len; cut++) {
                                /* a copy of exactly cut bytes, so a read
                                 * past it is caught by the sanitizers */
                                uint8_t *part = malloc(cut ? cut : 1);
                                memcpy(part, buf, cut);
                                cr_assert_eq(decode(part, cut, &out, errstr,
                                                    sizeof(errstr)),
                                             ORDO_ERR_BAD_ENCODING,
                                             "%s v%u cut at %zu of %zu",
                                             ordo_msg_type_name(t), v, cut,
                                             len);
                                cr_assert_neq(errstr[0], '\0');
                                free(part);
                        }
                }
}

Test(codec, trailing_bytes_are_refused) {
        uint8_t buf[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        size_t len;
        ordo_sample_fill(&m, ORDO_MSG_ORDER_OPENED, 3);
        len = encode_ok(&m, buf);
        buf[len] = 0;
        cr_assert_eq(decode(buf, len + 1, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_BAD_ENCODING);
        cr_assert(strstr(errstr, "trailing"), "%s", errstr);
}

Test(codec, bad_marker_is_refused) {
        uint8_t buf[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        size_t len;
        ordo_sample_fill(&m, ORDO_MSG_PLACE_ORDER, 3);
        len = encode_ok(&m, buf);
        buf[1] = 0x02; /* a future version of single-object encoding */
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_BAD_ENCODING);
        cr_assert(strstr(errstr, "marker"), "%s", errstr);
        buf[1] = 0x01;
        buf[0] = 0x00; /* an Avro container file or a JSON line is not it */
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_BAD_ENCODING);
}

Test(codec, unknown_fingerprint_is_refused) {
        uint8_t buf[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        size_t len;
        int bit;
        ordo_sample_fill(&m, ORDO_MSG_PLACE_ORDER, 3);
        len = encode_ok(&m, buf);
        for (bit = 0; bit < 64; bit++) {
                buf[2 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
                cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                             ORDO_ERR_FINGERPRINT, "bit %d", bit);
                cr_assert(strstr(errstr, "fingerprint"), "%s", errstr);
                buf[2 + bit / 8] ^= (uint8_t)(1u << (bit % 8));
        }
        /* the big-endian fingerprint is not ours either */
        {
                uint64_t fp = ordo_schema_fingerprint(ORDO_MSG_PLACE_ORDER);
                int i;
                for (i = 0; i < 8; i++)
                        buf[2 + i] = (uint8_t)(fp >> (56 - 8 * i));
                cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                             ORDO_ERR_FINGERPRINT);
        }
}

static void header_fp(uint8_t *buf, uint64_t fp) {
        int i;
        buf[0] = 0xc3;
        buf[1] = 0x01;
        for (i = 0; i < 8; i++)
                buf[2 + i] = (uint8_t)(fp >> (8 * i));
}

static void header(uint8_t *buf, ordo_msg_type_t t) {
        header_fp(buf, ordo_schema_fingerprint(t));
}

static uint64_t lcg(uint64_t *s) {
        *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
        return *s >> 24;
}

/* Whatever decodes must be a message the encoder accepts: NUL-terminated,
 * UTF-8, counts in range. */
static int decode_garbage(const uint8_t *buf, size_t len) {
        uint8_t again[BUF];
        ordo_msg_t out;
        char errstr[256];
        size_t len2;
        if (decode(buf, len, &out, errstr, sizeof(errstr)) != ORDO_ERR_OK) {
                cr_assert_neq(errstr[0], '\0');
                return 0;
        }
        cr_assert_eq(ordo_codec_encode(codec, &out, again, sizeof(again), &len2,
                                       errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
        return 1;
}

Test(codec, random_garbage_never_crashes) {
        /* Random bytes, half of them behind a valid header so the field
         * decoders see them; then valid messages with a few bytes
         * changed, cut or added. Run under the sanitizers in CI. */
        uint64_t s = 42;
        uint8_t buf[BUF], *p;
        ordo_msg_t m;
        int iter, ok = 0, mutated_ok = 0;
        for (iter = 0; iter < 100000; iter++) {
                size_t len = lcg(&s) % 512, i;
                for (i = 0; i < len; i++)
                        buf[i] = (uint8_t)lcg(&s);
                if (iter % 2 && len >= ORDO_CODEC_HEADER_SIZE)
                        header(buf,
                               (ordo_msg_type_t)(1 +
                                                 iter % (ORDO_MSG__COUNT - 1)));
                /* exactly len bytes on the heap: overreads are caught */
                p = malloc(len ? len : 1);
                memcpy(p, buf, len);
                ok += decode_garbage(p, len);
                free(p);
        }
        for (iter = 0; iter < 100000; iter++) {
                size_t len, k, nmut = 1 + lcg(&s) % 3;
                ordo_sample_fill(
                    &m, (ordo_msg_type_t)(1 + iter % (ORDO_MSG__COUNT - 1)),
                    (unsigned)iter);
                len = encode_ok(&m, buf);
                for (k = 0; k < nmut; k++) {
                        size_t at = ORDO_CODEC_HEADER_SIZE +
                                    lcg(&s) % (len - ORDO_CODEC_HEADER_SIZE);
                        switch (lcg(&s) % 4) {
                        case 0: /* a random byte */
                                buf[at] = (uint8_t)lcg(&s);
                                break;
                        case 1: /* a flipped bit */
                                buf[at] ^= (uint8_t)(1u << lcg(&s) % 8);
                                break;
                        case 2: /* cut */
                                len = at + 1;
                                break;
                        default: /* a byte added at the end */
                                if (len < sizeof(buf))
                                        buf[len++] = (uint8_t)lcg(&s);
                        }
                }
                p = malloc(len);
                memcpy(p, buf, len);
                mutated_ok += decode_garbage(p, len);
                free(p);
        }
        /* some mutants must still decode, or this checks nothing */
        cr_assert_gt(mutated_ok, 0);
        cr_log_info("garbage decoded: %d random, %d mutated of 100000 each", ok,
                    mutated_ok);
}

/* Arrays: multiple blocks and negative counts (spec, "Arrays"). The last
 * field of CreateActivity is commission_bps; encode it empty, then replace
 * the final 0 with hand-made blocks. */
static size_t with_array(uint8_t *buf, const uint8_t *blocks, size_t n) {
        ordo_msg_t m;
        size_t len;
        ordo_sample_fill(&m, ORDO_MSG_CREATE_ACTIVITY, 3);
        m.u.activity.n_commission_bps = 0;
        len = encode_ok(&m, buf);
        cr_assert_eq(buf[len - 1], 0);
        memcpy(buf + len - 1, blocks, n);
        return len - 1 + n;
}

Test(codec, arrays_in_several_blocks_and_negative_counts) {
        /* zigzag: 1000 = d0 0f, 500 = e8 07, 7 = 0e, -1 = 01, 2 = 04 */
        static const uint8_t blocks[] = {
                0x04, 0xd0, 0x0f, 0xe8, 0x07, /* 2 items: 1000, 500 */
                0x01, 0x02, 0x0e,             /* -1 items, 1 byte: 7 */
                0x00,
        };
        uint8_t buf[BUF];
        ordo_msg_t out;
        char errstr[256];
        size_t len = with_array(buf, blocks, sizeof(blocks));
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
        cr_assert_eq(out.u.activity.n_commission_bps, 3);
        cr_assert_eq(out.u.activity.commission_bps[0], 1000);
        cr_assert_eq(out.u.activity.commission_bps[1], 500);
        cr_assert_eq(out.u.activity.commission_bps[2], 7);
}

Test(codec, more_than_levels_wire_items_are_oversize) {
        uint8_t blocks[64], buf[BUF];
        ordo_msg_t out;
        char errstr[256];
        size_t n = 0, len;
        int i;
        /* 8 items in two blocks: accepted */
        blocks[n++] = 0x08;
        for (i = 0; i < 4; i++)
                blocks[n++] = 0x02;
        blocks[n++] = 0x07; /* -4 */
        blocks[n++] = 0x08; /* 4 bytes */
        for (i = 0; i < 4; i++)
                blocks[n++] = 0x02;
        blocks[n++] = 0x00;
        len = with_array(buf, blocks, n);
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
        cr_assert_eq(out.u.activity.n_commission_bps, ORDO_LEVELS_WIRE);
        /* a ninth item in a third block: refused */
        blocks[n - 1] = 0x02;
        blocks[n++] = 0x02;
        blocks[n++] = 0x00;
        len = with_array(buf, blocks, n);
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_OVERSIZE);
        cr_assert(strstr(errstr, "commission_bps"), "%s", errstr);
        /* a block count of INT64_MIN: refused, not negated */
        {
                static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 0xff,
                                                0xff, 0xff, 0xff, 0xff, 0x01 };
                len = with_array(buf, huge, sizeof(huge));
                cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                             ORDO_ERR_OVERSIZE);
        }
        /* a negative block size: refused */
        {
                static const uint8_t negsize[] = { 0x01, 0x01, 0x02, 0x00 };
                len = with_array(buf, negsize, sizeof(negsize));
                cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                             ORDO_ERR_BAD_ENCODING);
        }
}

Test(codec, malformed_scalars_are_refused) {
        uint8_t buf[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        size_t len;

        /* a boolean other than 0 or 1 (spec: one byte, 0 or 1);
         * automatic is OrderReceived's last field */
        ordo_sample_fill(&m, ORDO_MSG_ORDER_RECEIVED, 3);
        len = encode_ok(&m, buf);
        buf[len - 1] = 2;
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_BAD_ENCODING);
        cr_assert(strstr(errstr, "automatic"), "%s", errstr);

        /* a varint of more than 64 bits: ConfirmReceipt's ts_ms */
        ordo_sample_fill(&m, ORDO_MSG_CONFIRM_RECEIPT, 1);
        len = encode_ok(&m, buf);
        {
                uint8_t bad[64], *p = bad;
                int i;
                memcpy(p, buf, ORDO_CODEC_HEADER_SIZE + 1); /* + command_id */
                p += ORDO_CODEC_HEADER_SIZE + 1;
                for (i = 0; i < 9; i++)
                        *p++ = 0xff;
                *p++ = 0x02; /* bit 64 */
                *p++ = 0, *p++ = 0, *p++ = 2, *p++ = 'o';
                cr_assert_eq(decode(bad, (size_t)(p - bad), &out, errstr,
                                    sizeof(errstr)),
                             ORDO_ERR_BAD_ENCODING);
                cr_assert(strstr(errstr, "ts_ms"), "%s", errstr);
                /* 0xff x9 then 0x01 is INT64_MIN: accepted */
                bad[ORDO_CODEC_HEADER_SIZE + 1 + 9] = 0x01;
                cr_assert_eq(decode(bad, (size_t)(p - bad), &out, errstr,
                                    sizeof(errstr)),
                             ORDO_ERR_OK, "%s", errstr);
                cr_assert_eq(out.meta.ts_ms, INT64_MIN);
        }
}

Test(codec, strings_must_be_utf8_without_nul) {
        /* Avro strings are UTF-8; a C string cannot carry a NUL */
        static const char *const bad[] = {
                "\xff",
                "\xc0\xaf",         /* overlong '/' */
                "\xed\xa0\x80",     /* surrogate */
                "\xf4\x90\x80\x80", /* above U+10FFFF */
                "\xe4\xb8",         /* cut short */
        };
        uint8_t buf[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        size_t len, i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ordo_msg_init(&m, ORDO_MSG_CONFIRM_RECEIPT);
                strcpy(m.u.receipt.order_id, bad[i]);
                cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf),
                                               &len, errstr, sizeof(errstr)),
                             ORDO_ERR_INVALID_ARG, "case %zu", i);
                /* the same bytes on the wire */
                strcpy(m.u.receipt.order_id, "o");
                len = encode_ok(&m, buf);
                buf[len - 2] = (uint8_t)(2 * strlen(bad[i]));
                memcpy(buf + len - 1, bad[i], strlen(bad[i]));
                cr_assert_eq(decode(buf, len - 1 + strlen(bad[i]), &out, errstr,
                                    sizeof(errstr)),
                             ORDO_ERR_BAD_ENCODING, "case %zu", i);
        }
        /* one bad byte anywhere in a long ASCII string, which is checked
         * eight bytes at a time: refused; a valid é there: accepted */
        for (i = 0; i < ORDO_ID_MAX; i++) {
                ordo_msg_init(&m, ORDO_MSG_CONFIRM_RECEIPT);
                memset(m.u.receipt.order_id, 'a', ORDO_ID_MAX);
                m.u.receipt.order_id[i] = (char)0xff;
                cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf),
                                               &len, errstr, sizeof(errstr)),
                             ORDO_ERR_INVALID_ARG, "at %zu", i);
                if (i + 1 < ORDO_ID_MAX) {
                        m.u.receipt.order_id[i] = (char)0xc3;
                        m.u.receipt.order_id[i + 1] = (char)0xa9;
                        encode_ok(&m, buf);
                }
                /* all ASCII but a NUL at i, on the wire */
                memset(m.u.receipt.order_id, 'a', ORDO_ID_MAX);
                len = encode_ok(&m, buf);
                buf[len - ORDO_ID_MAX + i] = 0;
                cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                             ORDO_ERR_BAD_ENCODING, "at %zu", i);
        }
        ordo_msg_init(&m, ORDO_MSG_CONFIRM_RECEIPT);
        strcpy(m.u.receipt.order_id, "o");
        len = encode_ok(&m, buf);
        buf[len - 1] = 0; /* "\0" */
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_BAD_ENCODING);
        cr_assert(strstr(errstr, "NUL"), "%s", errstr);
}

Test(codec, encode_into_a_small_buffer_is_oversize_and_stays_inside) {
        uint8_t buf[BUF], small[BUF];
        ordo_msg_t m;
        char errstr[256];
        size_t len, size, got;
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                ordo_sample_fill(&m, t, 0);
                len = encode_ok(&m, buf);
                for (size = 0; size < len; size++) {
                        memset(small, 0xa5, sizeof(small));
                        cr_assert_eq(ordo_codec_encode(codec, &m, small, size,
                                                       &got, errstr,
                                                       sizeof(errstr)),
                                     ORDO_ERR_OVERSIZE, "%s size %zu",
                                     ordo_msg_type_name(t), size);
                        cr_assert_eq(small[size], 0xa5, "%s wrote past %zu",
                                     ordo_msg_type_name(t), size);
                }
                cr_assert_eq(ordo_codec_encode(codec, &m, small, len, &got,
                                               errstr, sizeof(errstr)),
                             ORDO_ERR_OK);
                cr_assert_eq(got, len);
        }
}

Test(codec, encode_refuses_bad_counts_and_unterminated_strings) {
        uint8_t buf[BUF];
        ordo_msg_t m;
        char errstr[256];
        size_t len;
        ordo_sample_fill(&m, ORDO_MSG_ORDER_OPENED, 3);
        m.u.open.n_commission_bps = ORDO_LEVELS_WIRE + 1;
        cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf), &len,
                                       errstr, sizeof(errstr)),
                     ORDO_ERR_INVALID_ARG);
        m.u.open.n_commission_bps = -1;
        cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf), &len,
                                       errstr, sizeof(errstr)),
                     ORDO_ERR_INVALID_ARG);
        ordo_sample_fill(&m, ORDO_MSG_ORDER_OPENED, 3);
        memset(m.u.open.user_id, 'u', sizeof(m.u.open.user_id));
        cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf), &len,
                                       errstr, sizeof(errstr)),
                     ORDO_ERR_INVALID_ARG);
        cr_assert(strstr(errstr, "user_id"), "%s", errstr);
        m.type = ORDO_MSG_NONE;
        cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf), &len,
                                       errstr, sizeof(errstr)),
                     ORDO_ERR_INVALID_ARG);
}

/* avro-c as an independent implementation: both directions, every type,
 * and the bytes must be identical. */

typedef struct avro_side_s {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t value;
} avro_side_t;

static void avro_side_init(avro_side_t *a, ordo_msg_type_t t) {
        const char *json = ordo_schema_json(t);
        cr_assert_eq(
            avro_schema_from_json_length(json, strlen(json), &a->schema), 0,
            "%s", avro_strerror());
        a->iface = avro_generic_class_from_schema(a->schema);
        cr_assert_not_null(a->iface, "%s", avro_strerror());
        cr_assert_eq(avro_generic_value_new(a->iface, &a->value), 0);
}

static void avro_side_fini(avro_side_t *a) {
        avro_value_decref(&a->value);
        avro_value_iface_decref(a->iface);
        avro_schema_decref(a->schema);
}

/* m's fields f[0..n) into v, a record of those fields in that order. */
static void to_avro_with(const ordo_msg_t *m, const ordo_field_t *f, size_t n,
                         avro_value_t *v) {
        size_t i;
        avro_value_reset(v);
        for (i = 0; i < n; i++) {
                const char *p = (const char *)m + f[i].offset;
                avro_value_t fv, item;
                int32_t k, cnt;
                cr_assert_eq(avro_value_get_by_index(v, i, &fv, NULL), 0);
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        /* avro-c sizes include the NUL (STACK.md) */
                        cr_assert_eq(
                            avro_value_set_string_len(&fv, p, strlen(p) + 1),
                            0);
                        break;
                case ORDO_FIELD_LONG:
                        cr_assert_eq(
                            avro_value_set_long(&fv, *(const int64_t *)p), 0);
                        break;
                case ORDO_FIELD_BOOL:
                        cr_assert_eq(
                            avro_value_set_boolean(&fv, *(const int32_t *)p),
                            0);
                        break;
                case ORDO_FIELD_LONGS:
                        cnt = *(const int32_t *)((const char *)m +
                                                 f[i].count_offset);
                        for (k = 0; k < cnt; k++) {
                                cr_assert_eq(
                                    avro_value_append(&fv, &item, NULL), 0);
                                cr_assert_eq(
                                    avro_value_set_long(
                                        &item, ((const int64_t *)p)[k]),
                                    0);
                        }
                        break;
                }
        }
}

static void to_avro(const ordo_msg_t *m, avro_value_t *v) {
        size_t n;
        const ordo_field_t *f = ordo_msg_fields(m->type, &n);
        to_avro_with(m, f, n, v);
}

static void check_avro(const ordo_msg_t *m, avro_value_t *v) {
        const ordo_field_t *f;
        size_t n, i;
        f = ordo_msg_fields(m->type, &n);
        for (i = 0; i < n; i++) {
                const char *p = (const char *)m + f[i].offset;
                const char *s;
                size_t size, k;
                int64_t l;
                int b;
                avro_value_t fv, item;
                cr_assert_eq(avro_value_get_by_index(v, i, &fv, NULL), 0);
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        cr_assert_eq(avro_value_get_string(&fv, &s, &size), 0);
                        cr_assert_eq(size, strlen(p) + 1, "%s", f[i].name);
                        cr_assert_eq(memcmp(s, p, size), 0, "%s", f[i].name);
                        break;
                case ORDO_FIELD_LONG:
                        cr_assert_eq(avro_value_get_long(&fv, &l), 0);
                        cr_assert_eq(l, *(const int64_t *)p, "%s", f[i].name);
                        break;
                case ORDO_FIELD_BOOL:
                        cr_assert_eq(avro_value_get_boolean(&fv, &b), 0);
                        cr_assert_eq(b, *(const int32_t *)p, "%s", f[i].name);
                        break;
                case ORDO_FIELD_LONGS:
                        cr_assert_eq(avro_value_get_size(&fv, &size), 0);
                        cr_assert_eq(size,
                                     (size_t) *
                                         (const int32_t *)((const char *)m +
                                                           f[i].count_offset),
                                     "%s", f[i].name);
                        for (k = 0; k < size; k++) {
                                cr_assert_eq(avro_value_get_by_index(
                                                 &fv, k, &item, NULL),
                                             0);
                                cr_assert_eq(avro_value_get_long(&item, &l), 0);
                                cr_assert_eq(l, ((const int64_t *)p)[k]);
                        }
                        break;
                }
        }
}

Test(codec, avro_c_cross_check_both_ways) {
        static char abuf[BUF];
        uint8_t buf[BUF], framed[BUF];
        ordo_msg_t m, out;
        char errstr[256], why[512];
        unsigned v;
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                avro_side_t a;
                avro_writer_t w = avro_writer_memory(abuf, sizeof(abuf));
                avro_reader_t r = avro_reader_memory(abuf, 0);
                avro_side_init(&a, t);
                for (v = 0; v < ORDO_SAMPLE_EDGES + 50; v++) {
                        size_t len, alen;
                        ordo_sample_fill(&m, t, v);

                        /* avro-c writes, we read */
                        to_avro(&m, &a.value);
                        avro_writer_reset(w);
                        cr_assert_eq(avro_value_write(w, &a.value), 0, "%s",
                                     avro_strerror());
                        alen = (size_t)avro_writer_tell(w);
                        header(framed, t);
                        memcpy(framed + ORDO_CODEC_HEADER_SIZE, abuf, alen);
                        cr_assert_eq(decode(framed,
                                            alen + ORDO_CODEC_HEADER_SIZE, &out,
                                            errstr, sizeof(errstr)),
                                     ORDO_ERR_OK, "%s v%u: %s",
                                     ordo_msg_type_name(t), v, errstr);
                        cr_assert(ordo_sample_equal(&m, &out, why, sizeof(why)),
                                  "%s v%u: %s", ordo_msg_type_name(t), v, why);

                        /* we write, avro-c reads */
                        len = encode_ok(&m, buf);
                        cr_assert_eq(len, alen + ORDO_CODEC_HEADER_SIZE);
                        cr_assert_eq(
                            memcmp(buf + ORDO_CODEC_HEADER_SIZE, abuf, alen), 0,
                            "%s v%u: bytes differ", ordo_msg_type_name(t), v);
                        avro_value_reset(&a.value);
                        avro_reader_memory_set_source(
                            r, (const char *)buf + ORDO_CODEC_HEADER_SIZE,
                            (int64_t)(len - ORDO_CODEC_HEADER_SIZE));
                        cr_assert_eq(avro_value_read(r, &a.value), 0, "%s",
                                     avro_strerror());
                        check_avro(&m, &a.value);
                }
                avro_reader_free(r);
                avro_writer_free(w);
                avro_side_fini(&a);
        }
}

Test(codec, max_length_strings_fit_and_longer_ones_are_refused) {
        /* RULES.md: identifiers are at most 64 bytes. avro-c writes
         * order_id of 64 bytes (decoded) and of 65 (refused, OVERSIZE). */
        static char abuf[BUF];
        static const char id65[] =
            "12345678901234567890123456789012345678901234567890"
            "123456789012345";
        uint8_t framed[BUF];
        ordo_msg_t m, out;
        char errstr[256];
        avro_side_t a;
        avro_value_t fv;
        size_t cut;

        avro_side_init(&a, ORDO_MSG_PLACE_ORDER);
        ordo_sample_fill(&m, ORDO_MSG_PLACE_ORDER, 0);
        cr_assert_eq(strlen(m.u.place.order_id), ORDO_ID_MAX);
        for (cut = 64; cut <= 65; cut++) {
                avro_writer_t w = avro_writer_memory(abuf, sizeof(abuf));
                size_t alen;
                to_avro(&m, &a.value);
                cr_assert_str_eq(
                    ordo_msg_fields(ORDO_MSG_PLACE_ORDER, &alen)[4].name,
                    "order_id");
                cr_assert_eq(avro_value_get_by_index(&a.value, 4, &fv, NULL),
                             0);
                cr_assert_eq(
                    avro_value_set_string_len(&fv, id65 + 65 - cut, cut + 1),
                    0);
                cr_assert_eq(avro_value_write(w, &a.value), 0);
                alen = (size_t)avro_writer_tell(w);
                avro_writer_free(w);
                header(framed, ORDO_MSG_PLACE_ORDER);
                memcpy(framed + ORDO_CODEC_HEADER_SIZE, abuf, alen);
                if (cut == 64) {
                        cr_assert_eq(decode(framed,
                                            alen + ORDO_CODEC_HEADER_SIZE, &out,
                                            errstr, sizeof(errstr)),
                                     ORDO_ERR_OK, "%s", errstr);
                        cr_assert_str_eq(out.u.place.order_id, id65 + 1);
                } else {
                        cr_assert_eq(decode(framed,
                                            alen + ORDO_CODEC_HEADER_SIZE, &out,
                                            errstr, sizeof(errstr)),
                                     ORDO_ERR_OVERSIZE);
                        cr_assert(strstr(errstr, "order_id"), "%s", errstr);
                }
        }
        avro_side_fini(&a);
}

/* Schema evolution (DESIGN.md, "Avro"; decision 0024): a message written
 * with a version of its schema that writers used before
 * (schemas/previous/) still decodes, the fields added since zero or
 * empty: their defaults. (avro-c 1.11 cannot resolve a reader field the
 * writer lacks; check_python_decode.py has fastavro resolve them.) */

static int has_field(const ordo_field_t *f, size_t n, const char *name) {
        size_t i;
        for (i = 0; i < n; i++)
                if (!strcmp(f[i].name, name))
                        return 1;
        return 0;
}

static avro_schema_t parse_schema(const char *json) {
        avro_schema_t s;
        cr_assert_eq(avro_schema_from_json_length(json, strlen(json), &s), 0,
                     "avro-c: %s", avro_strerror());
        return s;
}

Test(codec, previous_schemas_match_their_field_tables) {
        const ordo__previous_schema_t *p;
        int seen = 0;
        for (p = ordo__previous_schemas; p->type != ORDO_MSG_NONE; p++) {
                const char *name = ordo_msg_type_name(p->type);
                size_t n, ncur, i;
                const ordo_field_t *f =
                    ordo_msg_previous_fields(p->type, p->version, &n);
                const ordo_field_t *cur = ordo_msg_fields(p->type, &ncur);
                avro_schema_t s = parse_schema(p->schema.json);

                seen++;
                cr_assert_not_null(f, "%s v%d: no field table", name,
                                   p->version);
                cr_assert_str_eq(avro_schema_name(s), name);
                cr_assert_eq(avro_schema_record_size(s), n, "%s v%d", name,
                             p->version);
                cr_assert_eq(
                    ordo__crc64_avro(p->schema.pcf, strlen(p->schema.pcf)),
                    p->schema.fingerprint);
                cr_assert_neq(p->schema.fingerprint,
                              ordo_schema_fingerprint(p->type),
                              "%s v%d is the current schema", name, p->version);
                for (i = 0; i < n; i++) {
                        cr_assert_str_eq(
                            avro_schema_record_field_name(s, (int)i), f[i].name,
                            "%s v%d field %zu", name, p->version, i);
                        cr_assert_str_eq(
                            schema_avro(avro_schema_record_field_get_by_index(
                                s, (int)i)),
                            kind_avro(f[i].kind));
                        /* a field that changed its type is not evolution */
                        cr_assert(has_field(cur, ncur, f[i].name),
                                  "%s.%s was removed", name, f[i].name);
                }
                /* Fields added since are optional, with a default that is
                 * what the decoder leaves in them: zero or empty. */
                for (i = 0; i < ncur; i++) {
                        if (has_field(f, n, cur[i].name))
                                continue;
                        cr_assert(!cur[i].required,
                                  "%s.%s, added after v%d, has no default",
                                  name, cur[i].name, p->version);
                        cr_assert(cur[i].kind == ORDO_FIELD_STRING ||
                                      (cur[i].kind == ORDO_FIELD_LONG &&
                                       cur[i].def == 0),
                                  "%s.%s: the decoder would leave 0, not the "
                                  "default",
                                  name, cur[i].name);
                }
                avro_schema_decref(s);
        }
        cr_assert_geq(seen, 1, "schemas/previous/ is empty");
        cr_assert_null(
            ordo_msg_previous_fields(ORDO_MSG_TICK, 1, &(size_t){ 0 }));
}

Test(codec, data_of_a_previous_version_decodes) {
        static char abuf[BUF];
        const ordo__previous_schema_t *p;
        for (p = ordo__previous_schemas; p->type != ORDO_MSG_NONE; p++) {
                const char *name = ordo_msg_type_name(p->type);
                size_t n, ncur, i;
                const ordo_field_t *f =
                    ordo_msg_previous_fields(p->type, p->version, &n);
                const ordo_field_t *cur = ordo_msg_fields(p->type, &ncur);
                avro_schema_t ws = parse_schema(p->schema.json);
                avro_value_iface_t *wi = avro_generic_class_from_schema(ws);
                avro_value_t wv;
                unsigned v;

                cr_assert_eq(avro_generic_value_new(wi, &wv), 0);
                for (v = 0; v < ORDO_SAMPLE_EDGES + 50; v++) {
                        uint8_t framed[BUF], ours[BUF];
                        char errstr[256], why[512];
                        avro_writer_t w =
                            avro_writer_memory(abuf, sizeof(abuf));
                        ordo_msg_t m, out;
                        size_t alen, len;

                        ordo_sample_fill(&m, p->type, v);
                        /* what a writer of that version could not say */
                        for (i = 0; i < ncur; i++)
                                if (!has_field(f, n, cur[i].name))
                                        memset((char *)&m + cur[i].offset, 0,
                                               cur[i].size);
                        to_avro_with(&m, f, n, &wv);
                        cr_assert_eq(avro_value_write(w, &wv), 0, "%s",
                                     avro_strerror());
                        alen = (size_t)avro_writer_tell(w);
                        avro_writer_free(w);
                        header_fp(framed, p->schema.fingerprint);
                        memcpy(framed + ORDO_CODEC_HEADER_SIZE, abuf, alen);
                        alen += ORDO_CODEC_HEADER_SIZE;

                        cr_assert_eq(
                            decode(framed, alen, &out, errstr, sizeof(errstr)),
                            ORDO_ERR_OK, "%s v%d sample %u: %s", name,
                            p->version, v, errstr);
                        cr_assert(ordo_sample_equal(&m, &out, why, sizeof(why)),
                                  "%s v%d sample %u: %s", name, p->version, v,
                                  why);
                        /* and written back in that version, byte for byte */
                        cr_assert_eq(ordo_codec_encode_as(
                                         codec, &out, p->schema.fingerprint,
                                         ours, sizeof(ours), &len, errstr,
                                         sizeof(errstr)),
                                     ORDO_ERR_OK, "%s", errstr);
                        cr_assert_eq(len, alen);
                        cr_assert_eq(memcmp(ours, framed, len), 0);
                        cr_assert_eq(ordo_codec_writer_fingerprint(ours, len),
                                     p->schema.fingerprint);
                }
                /* a type's schemas are its own */
                cr_assert_null(ordo_codec_writer_fields(
                    codec, p->schema.fingerprint, ORDO_MSG_TICK, &n));
                cr_assert_eq(ordo_codec_writer_fields(
                                 codec, p->schema.fingerprint, p->type, &n),
                             f);
                avro_value_decref(&wv);
                avro_value_iface_decref(wi);
                avro_schema_decref(ws);
        }
}

Test(codec, encode_as_refuses_another_types_fingerprint) {
        uint8_t buf[BUF];
        char errstr[256];
        ordo_msg_t m;
        size_t len;
        ordo_sample_fill(&m, ORDO_MSG_TICK, 0);
        cr_assert_eq(ordo_codec_encode_as(
                         codec, &m,
                         ordo_schema_fingerprint(ORDO_MSG_PLACE_ORDER), buf,
                         sizeof(buf), &len, errstr, sizeof(errstr)),
                     ORDO_ERR_FINGERPRINT);
        cr_assert(strstr(errstr, "Tick"), "%s", errstr);
        cr_assert_eq(ordo_codec_writer_fingerprint(buf, 3), 0);
}

/* schemas.write.previous: a rolling upgrade writes a type in a previous
 * version of its schema; anything else in the list is refused, named. */
Test(codec, write_previous_pins_a_type_and_refuses_the_rest) {
        static const char *bad[] = { "Foo.v1",
                                     "StockReserved.v9",
                                     "StockReserved",
                                     "StockReserved.v",
                                     "Tick.v1",
                                     "StockReserved.v1x",
                                     "StockReserved.v1,Bogus.v2" };
        const ordo__previous_schema_t *p = ordo__previous_schemas;
        uint8_t buf[BUF];
        char errstr[256], want[64];
        ordo_msg_t m, out;
        size_t len, i;

        ordo_sample_fill(&m, p->type, 1);
        len = encode_ok(&m, buf);
        cr_assert_eq(ordo_codec_writer_fingerprint(buf, len),
                     ordo_schema_fingerprint(p->type), "the current one");
        cr_assert_eq(
            ordo_codec_write_previous(codec, "", errstr, sizeof(errstr)),
            ORDO_ERR_OK);
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                cr_assert_eq(ordo_codec_write_previous(codec, bad[i], errstr,
                                                       sizeof(errstr)),
                             ORDO_ERR_CONFIG_INVALID, "%s", bad[i]);
                cr_assert(strstr(errstr, "schemas.write.previous"), "%s",
                          errstr);
        }
        cr_assert(strstr(errstr, "\"Bogus.v2\""), "%s", errstr);
        snprintf(want, sizeof(want), "%s.v%d", ordo_msg_type_name(p->type),
                 p->version);
        cr_assert_eq(
            ordo_codec_write_previous(codec, want, errstr, sizeof(errstr)),
            ORDO_ERR_OK, "%s", errstr);
        len = encode_ok(&m, buf);
        cr_assert_eq(ordo_codec_writer_fingerprint(buf, len),
                     p->schema.fingerprint);
        cr_assert_eq(decode(buf, len, &out, errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
        cr_assert_eq(out.type, p->type);
        cr_assert_str_eq(out.meta.id, m.meta.id);
}
