/*
 * ordo - encode and decode cost of the Avro codec: the hand-written codec
 * of schemas/codec.c against avro-c's generic value API, on an OrderOpened
 * (the largest event of the order stream) and a PlaceOrder (the command a
 * flash sale receives most). Both sides start and end at ordo_msg_t, so
 * the avro-c figures include moving fields in and out of its values, which
 * a stage would have to do too. Figures go to bench/RESULTS.md, "Codec".
 *
 * usage: bench_codec [ITERATIONS]   (default 2000000; best of 5 runs)
 */
#include <avro.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"

#define RUNS 5
#define BUF  2048

typedef struct avro_side_s {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t value;
        avro_value_t fields[32]; /* handles cached once (STACK.md) */
        avro_writer_t writer;
        avro_reader_t reader;
        char buf[BUF];
} avro_side_t;

static uint64_t sink; /* keeps the optimiser from dropping the work */

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, const char *why) {
        fprintf(stderr, "bench_codec: %s: %s\n", what, why);
        exit(1);
}

static void order_opened(ordo_msg_t *m) {
        ordo_msg_init(m, ORDO_MSG_ORDER_OPENED);
        strcpy(m->meta.id, "ordo.order-commands:3:1234567:0");
        strcpy(m->meta.aggregate_id, "o-20261111-000123456");
        m->meta.version = 1;
        m->meta.ts_ms = 1762790400123;
        strcpy(m->meta.causation_id, "ordo.activity-commands:1:987654:0");
        strcpy(m->meta.correlation_id, "9b2f6c1e-3d4a-4f7e-8a21-5c0d9e7b1a34");
        strcpy(m->u.open.order_id, "o-20261111-000123456");
        strcpy(m->u.open.activity_id, "act-double11-phone");
        strcpy(m->u.open.user_id, "wx-oA3f9x-00042");
        m->u.open.qty = 1;
        m->u.open.amount_cents = 399900;
        m->u.open.placed_ms = 1762790400123;
        m->u.open.pay_deadline_ms = 1762790400123 + 900000;
        m->u.open.auto_receive_ms = 864000000;
        m->u.open.freeze_ms = 604800000;
        m->u.open.commission_bps[0] = 1000;
        m->u.open.commission_bps[1] = 500;
        m->u.open.n_commission_bps = 2;
}

static void place_order(ordo_msg_t *m) {
        ordo_msg_init(m, ORDO_MSG_PLACE_ORDER);
        strcpy(m->meta.id, "9b2f6c1e-3d4a-4f7e-8a21-5c0d9e7b1a34");
        m->meta.ts_ms = 1762790400123;
        strcpy(m->u.place.order_id, "o-20261111-000123456");
        strcpy(m->u.place.activity_id, "act-double11-phone");
        strcpy(m->u.place.user_id, "wx-oA3f9x-00042");
        m->u.place.qty = 1;
}

static void avro_side_init(avro_side_t *a, ordo_msg_type_t t) {
        const char *json = ordo_schema_json(t);
        size_t n, i;
        if (avro_schema_from_json_length(json, strlen(json), &a->schema))
                die("schema", avro_strerror());
        if (!(a->iface = avro_generic_class_from_schema(a->schema)) ||
            avro_generic_value_new(a->iface, &a->value))
                die("value", avro_strerror());
        ordo_msg_fields(t, &n);
        for (i = 0; i < n; i++)
                if (avro_value_get_by_index(&a->value, i, &a->fields[i], NULL))
                        die("field", avro_strerror());
        a->writer = avro_writer_memory(a->buf, sizeof(a->buf));
        a->reader = avro_reader_memory(a->buf, 0);
}

static void avro_side_fini(avro_side_t *a) {
        avro_reader_free(a->reader);
        avro_writer_free(a->writer);
        avro_value_decref(&a->value);
        avro_value_iface_decref(a->iface);
        avro_schema_decref(a->schema);
}

/* ordo_msg_t -> avro-c value -> header + datum in out */
static size_t avro_encode(avro_side_t *a, const ordo_msg_t *m, uint8_t *out) {
        const ordo_field_t *f;
        uint64_t fp = ordo_schema_fingerprint(m->type);
        size_t n, i, len;
        avro_value_t item;
        int32_t k, cnt;

        f = ordo_msg_fields(m->type, &n);
        for (i = 0; i < n; i++) {
                const char *p = (const char *)m + f[i].offset;
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        avro_value_set_string_len(&a->fields[i], p,
                                                  strlen(p) + 1);
                        break;
                case ORDO_FIELD_LONG:
                        avro_value_set_long(&a->fields[i], *(const int64_t *)p);
                        break;
                case ORDO_FIELD_BOOL:
                        avro_value_set_boolean(&a->fields[i],
                                               *(const int32_t *)p);
                        break;
                case ORDO_FIELD_LONGS:
                        avro_value_reset(&a->fields[i]);
                        cnt = *(const int32_t *)((const char *)m +
                                                 f[i].count_offset);
                        for (k = 0; k < cnt; k++) {
                                avro_value_append(&a->fields[i], &item, NULL);
                                avro_value_set_long(&item,
                                                    ((const int64_t *)p)[k]);
                        }
                        break;
                }
        }
        avro_writer_reset(a->writer);
        if (avro_value_write(a->writer, &a->value))
                die("avro_value_write", avro_strerror());
        len = (size_t)avro_writer_tell(a->writer);
        out[0] = 0xc3;
        out[1] = 0x01;
        for (i = 0; i < 8; i++)
                out[2 + i] = (uint8_t)(fp >> (8 * i));
        memcpy(out + ORDO_CODEC_HEADER_SIZE, a->buf, len);
        return len + ORDO_CODEC_HEADER_SIZE;
}

/* header + datum -> avro-c value -> ordo_msg_t */
static void avro_decode(avro_side_t *a, ordo_msg_type_t t, const uint8_t *in,
                        size_t len, ordo_msg_t *m) {
        const ordo_field_t *f;
        size_t n, i, size, k;
        avro_value_t item;
        const char *s;
        int b;

        if (in[0] != 0xc3 || in[1] != 0x01)
                die("avro_decode", "marker");
        avro_reader_memory_set_source(a->reader,
                                      (const char *)in + ORDO_CODEC_HEADER_SIZE,
                                      (int64_t)(len - ORDO_CODEC_HEADER_SIZE));
        if (avro_value_read(a->reader, &a->value))
                die("avro_value_read", avro_strerror());
        memset(m, 0, sizeof(*m));
        m->type = t;
        f = ordo_msg_fields(t, &n);
        for (i = 0; i < n; i++) {
                char *p = (char *)m + f[i].offset;
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        avro_value_get_string(&a->fields[i], &s, &size);
                        if (size > f[i].size)
                                die("avro_decode", "oversize");
                        memcpy(p, s, size);
                        break;
                case ORDO_FIELD_LONG:
                        avro_value_get_long(&a->fields[i], (int64_t *)p);
                        break;
                case ORDO_FIELD_BOOL:
                        avro_value_get_boolean(&a->fields[i], &b);
                        *(int32_t *)p = b;
                        break;
                case ORDO_FIELD_LONGS:
                        avro_value_get_size(&a->fields[i], &size);
                        if (size > ORDO_LEVELS_WIRE)
                                die("avro_decode", "oversize");
                        for (k = 0; k < size; k++) {
                                avro_value_get_by_index(&a->fields[i], k, &item,
                                                        NULL);
                                avro_value_get_long(&item, (int64_t *)p + k);
                        }
                        *(int32_t *)((char *)m + f[i].count_offset) =
                            (int32_t)size;
                        break;
                }
        }
}

typedef enum { HAND_ENC, HAND_DEC, AVRO_ENC, AVRO_DEC } op_t;

static double run(op_t op, ordo_codec_t *c, avro_side_t *a, const ordo_msg_t *m,
                  const uint8_t *wire, size_t wire_len, long iters) {
        static uint8_t buf[BUF];
        char errstr[256];
        double best = 1e30;
        ordo_msg_t out;
        int r;
        long i;
        for (r = 0; r < RUNS; r++) {
                double t0 = now_ns(), dt;
                for (i = 0; i < iters; i++) {
                        size_t len = 0;
                        switch (op) {
                        case HAND_ENC:
                                if (ordo_codec_encode(c, m, buf, sizeof(buf),
                                                      &len, errstr,
                                                      sizeof(errstr)))
                                        die("encode", errstr);
                                sink += len + buf[len - 1];
                                break;
                        case HAND_DEC:
                                if (ordo_codec_decode(c, wire, wire_len, &out,
                                                      errstr, sizeof(errstr)))
                                        die("decode", errstr);
                                sink += (uint64_t)out.meta.ts_ms;
                                break;
                        case AVRO_ENC:
                                len = avro_encode(a, m, buf);
                                sink += len + buf[len - 1];
                                break;
                        case AVRO_DEC:
                                avro_decode(a, m->type, wire, wire_len, &out);
                                sink += (uint64_t)out.meta.ts_ms;
                                break;
                        }
                }
                dt = (now_ns() - t0) / (double)iters;
                if (dt < best)
                        best = dt;
        }
        return best;
}

static void bench(ordo_codec_t *c, void (*make)(ordo_msg_t *), long iters) {
        uint8_t wire[BUF], check[BUF];
        char errstr[256];
        ordo_msg_t m;
        avro_side_t a;
        size_t len, alen;
        make(&m);
        if (ordo_codec_encode(c, &m, wire, sizeof(wire), &len, errstr,
                              sizeof(errstr)))
                die("encode", errstr);
        avro_side_init(&a, m.type);
        /* both sides must produce the same bytes, or the race is unfair */
        alen = avro_encode(&a, &m, check);
        if (alen != len || memcmp(wire, check, len))
                die(ordo_msg_type_name(m.type), "avro-c bytes differ");
        printf("%-12s %4zu B  hand encode %7.1f ns  decode %7.1f ns   "
               "avro-c encode %7.1f ns  decode %7.1f ns\n",
               ordo_msg_type_name(m.type), len,
               run(HAND_ENC, c, &a, &m, wire, len, iters),
               run(HAND_DEC, c, &a, &m, wire, len, iters),
               run(AVRO_ENC, c, &a, &m, wire, len, iters),
               run(AVRO_DEC, c, &a, &m, wire, len, iters));
        avro_side_fini(&a);
}

int main(int argc, char **argv) {
        long iters = argc > 1 ? atol(argv[1]) : 2000000;
        char errstr[256];
        ordo_codec_t *c = ordo_codec_new(errstr, sizeof(errstr));
        if (!c)
                die("codec", errstr);
        if (iters < 1)
                die("usage", "bench_codec [ITERATIONS]");
        printf("%ld iterations, best of %d runs, ns per message\n", iters,
               RUNS);
        bench(c, order_opened, iters);
        bench(c, place_order, iters);
        ordo_codec_destroy(c);
        return sink == 42 ? 1 : 0;
}
