/*
 * libFuzzer target for the door (producers/validate.c) and its inverse
 * (producers/json_out.c). Beyond "no crash, no sanitizer report", it checks
 * what the contract promises for any input:
 * - a fault fills errstr with one printable line of valid UTF-8, and
 *   fault.field and fault.reason are terminated and valid UTF-8;
 * - an accepted command written back out is accepted again, by a trusted
 *   reader, as the same command (validate(to_json(m)) == m);
 * - the flat fast path (json_flat.h) either declines an input or gives
 *   the tree json_loadb gives for it.
 * Built by tests/fuzz/run.sh against the sources directly.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_flat.h"
#include "json_out.h"
#include "validate.h"

static void check_printable(const char *s, size_t size) {
        if (!memchr(s, '\0', size))
                abort();
        for (; *s; s++)
                if ((unsigned char)*s < 0x20)
                        abort();
}

static void check_utf8(const char *s) {
        json_t *j = json_string(s); /* NULL unless valid UTF-8 */
        if (!j)
                abort();
        json_decref(j);
}

static void same(const ordo_msg_t *a, const ordo_msg_t *b) {
        const ordo_field_t *f;
        size_t n, i;
        int32_t ca, cb;

        if (a->type != b->type)
                abort();
        f = ordo_msg_fields(a->type, &n);
        for (i = 0; i < n; i++) {
                const char *pa = (const char *)a + f[i].offset;
                const char *pb = (const char *)b + f[i].offset;
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        if (strncmp(pa, pb, f[i].size))
                                abort();
                        break;
                case ORDO_FIELD_LONG:
                        if (memcmp(pa, pb, 8))
                                abort();
                        break;
                case ORDO_FIELD_BOOL:
                        if (memcmp(pa, pb, 4))
                                abort();
                        break;
                case ORDO_FIELD_LONGS:
                        memcpy(&ca, (const char *)a + f[i].count_offset, 4);
                        memcpy(&cb, (const char *)b + f[i].count_offset, 4);
                        if (ca != cb || ca < 0 || ca > ORDO_LEVELS_WIRE ||
                            memcmp(pa, pb, (size_t)ca * 8))
                                abort();
                        break;
                }
        }
}

static void check_flat(const uint8_t *data, size_t size) {
        json_t *flat = ordo_json_flat_parse((const char *)data, size);
        json_t *ref;

        if (!flat)
                return;
        ref = json_loadb((const char *)data, size,
                         JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, NULL);
        if (!ref || !json_equal(flat, ref))
                abort();
        json_decref(ref);
        json_decref(flat);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const ordo_validate_opts_t trusted = { .keep_ts = 1,
                                                      .allow_internal = 1 };
        ordo_validate_opts_t o;
        ordo_field_fault_t fault;
        ordo_msg_t m, back;
        char err[256];
        ordo_err_t e;
        char *json;
        int k;

        /* The fuzzer's buffer is not NUL-terminated: the door must not
         * need it to be. */
        check_flat(data, size);
        for (k = 0; k < 8; k++) {
                memset(&o, 0, sizeof(o));
                o.keep_ts = k & 1;
                o.allow_internal = (k >> 1) & 1;
                o.generate_order_id = (k >> 2) & 1;
                e = ordo_validate_command((const char *)data, size, &o, &m,
                                          &fault, err, sizeof(err));
                check_printable(err, sizeof(err));
                check_utf8(err);
                if (!memchr(fault.field, '\0', sizeof(fault.field)) ||
                    !memchr(fault.reason, '\0', sizeof(fault.reason)))
                        abort();
                check_utf8(fault.field);
                if (e != ORDO_ERR_OK) {
                        if (!err[0] || !fault.reason[0])
                                abort();
                        continue;
                }
                if (err[0] || fault.reason[0])
                        abort();
                /* As the gateway would: an absent order_id is generated. */
                if (m.type == ORDO_MSG_PLACE_ORDER && !m.u.place.order_id[0]) {
                        if (!o.generate_order_id)
                                abort();
                        strcpy(m.u.place.order_id, "generated");
                }
                json = ordo_msg_to_json(&m);
                if (!json)
                        abort();
                e = ordo_validate_command(json, strlen(json), &trusted, &back,
                                          NULL, err, sizeof(err));
                if (e != ORDO_ERR_OK)
                        abort();
                same(&m, &back);
                free(json);
        }
        return 0;
}
