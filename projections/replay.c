/*
 * ordo replay: a topic decoded to JSON lines, for analysts. Partitions
 * are read one after the other, each in offset order, up to the end they
 * had when the replay started; read_committed, so aborted transactions
 * never show.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "commands.h"
#include "json_out.h"
#include "kafka.h"

typedef struct {
        int64_t from_offset, from_ts, to_ts;
        int64_t printed, undecodable;
} replay_opts_t;

static const char *header(const rd_kafka_message_t *m, const char *name,
                          char *buf, size_t size) {
        rd_kafka_headers_t *h;
        const void *v;
        size_t n;
        buf[0] = '\0';
        if (!rd_kafka_message_headers(m, &h) &&
            !rd_kafka_header_get_last(h, name, &v, &n) && v) {
                if (n >= size)
                        n = size - 1;
                memcpy(buf, v, n);
                buf[n] = '\0';
        }
        return buf;
}

/* A line for what cannot be decoded (dead letters, foreign writers). */
static void print_undecodable(const rd_kafka_message_t *m, const char *reason) {
        json_t *o = json_object();
        char buf[512];
        char *s;
        json_object_set_new(o, "undecodable", json_string(reason));
        json_object_set_new(o, "partition", json_integer(m->partition));
        json_object_set_new(o, "offset", json_integer(m->offset));
        if (m->key)
                json_object_set_new(
                    o, "key", json_stringn((const char *)m->key, m->key_len));
        header(m, "ordo.error", buf, sizeof(buf));
        if (buf[0])
                json_object_set_new(o, "error", json_string(buf));
        header(m, "ordo.source.topic", buf, sizeof(buf));
        if (buf[0])
                json_object_set_new(o, "source_topic", json_string(buf));
        header(m, "ordo.source.partition", buf, sizeof(buf));
        if (buf[0])
                json_object_set_new(o, "source_partition", json_string(buf));
        header(m, "ordo.source.offset", buf, sizeof(buf));
        if (buf[0])
                json_object_set_new(o, "source_offset", json_string(buf));
        s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s)
                puts(s);
        free(s);
        json_decref(o);
}

static int replay_partition(rd_kafka_t *rk, ordo_codec_t *codec,
                            const char *topic, int32_t part, replay_opts_t *o) {
        int64_t lo, hi;
        rd_kafka_topic_partition_list_t *tp;
        char why[256];

        if (ordo_kafka_watermarks(rk, topic, part, &lo, &hi, why,
                                  sizeof(why))) {
                fprintf(stderr, "ordo replay: %s\n", why);
                return -1;
        }
        if (hi <= lo || hi <= o->from_offset)
                return 0;
        tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, topic, part)->offset =
            o->from_offset > lo ? o->from_offset : lo;
        rd_kafka_assign(rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        for (;;) {
                ordo_msg_t msg;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
                int stop = 0;
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        stop = 1;
                else if (m->err)
                        fprintf(stderr, "ordo replay: %s\n",
                                rd_kafka_message_errstr(m));
                else if (!m->payload ||
                         ordo_codec_decode(codec, m->payload, m->len, &msg, why,
                                           sizeof(why))) {
                        print_undecodable(m, m->payload ? why : "empty");
                        o->undecodable++;
                } else if (msg.meta.ts_ms >= o->from_ts &&
                           msg.meta.ts_ms < o->to_ts) {
                        char *s = ordo_msg_to_json(&msg);
                        if (s)
                                puts(s);
                        free(s);
                        o->printed++;
                }
                if (!m->err && m->offset + 1 >= hi)
                        stop = 1;
                rd_kafka_message_destroy(m);
                if (stop)
                        break;
        }
        rd_kafka_assign(rk, NULL);
        return 0;
}

static int parse_ms(const char *opt, const char *v, int64_t *out) {
        char *end;
        *out = strtoll(v, &end, 10);
        if (!*v || *end) {
                fprintf(stderr,
                        "ordo replay: %s: expected an integer, got "
                        "\"%s\"\n",
                        opt, v);
                return -1;
        }
        return 0;
}

int ordo_cmd_replay(ordo_config_t *conf, int argc, char **argv) {
        replay_opts_t o = { 0, INT64_MIN, INT64_MAX, 0, 0 };
        const char *name = NULL;
        char topic[256], errstr[512];
        rd_kafka_t *rk;
        ordo_codec_t *codec;
        int i, np, rc = 0, from_offset_set = 0, from_ts_set = 0;

        if (ordo_wants_help(argc, argv)) {
                printf("\nTOPIC is a short name (order-events) or a full "
                       "one (ordo.order-events).\nEach message becomes one "
                       "JSON object on stdout with its \"type\" and the\n"
                       "fields of schemas/<type>.avsc; partitions one after "
                       "the other, offsets in\norder, up to the end at the "
                       "start. A message that does not decode (the\n"
                       "dead-letters topic) becomes {\"undecodable\": "
                       "reason, \"error\", \"source_topic\", ...}.\n\n"
                       "  --from-offset N   start at offset N of every "
                       "partition\n"
                       "  --from-ts MS      only messages with ts_ms >= MS\n"
                       "  --to-ts MS        only messages with ts_ms < MS\n");
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--from-offset") && i + 1 < argc) {
                        if (parse_ms(argv[i], argv[i + 1], &o.from_offset))
                                return 2;
                        i++;
                        from_offset_set = 1;
                } else if (!strcmp(argv[i], "--from-ts") && i + 1 < argc) {
                        if (parse_ms(argv[i], argv[i + 1], &o.from_ts))
                                return 2;
                        i++;
                        from_ts_set = 1;
                } else if (!strcmp(argv[i], "--to-ts") && i + 1 < argc) {
                        if (parse_ms(argv[i], argv[i + 1], &o.to_ts))
                                return 2;
                        i++;
                } else if (argv[i][0] == '-') {
                        fprintf(stderr, "ordo replay: unknown option %s\n",
                                argv[i]);
                        return 2;
                } else if (!name)
                        name = argv[i];
                else {
                        fprintf(stderr, "ordo replay: one TOPIC only\n");
                        return 2;
                }
        }
        if (!name) {
                fprintf(stderr, "ordo replay: which TOPIC? (e.g. "
                                "order-events)\n");
                return 2;
        }
        if (from_offset_set && from_ts_set) {
                fprintf(stderr, "ordo replay: --from-offset and --from-ts "
                                "exclude each other\n");
                return 2;
        }
        if (ordo_topic_is_snapshots(ordo_topic_from_short(name))) {
                fprintf(stderr,
                        "ordo replay: %s holds processor snapshots (rules "
                        "state, not Avro); replay an event topic\n",
                        name);
                return 2;
        }
        if (ordo_topic_from_short(name) != ORDO_TOPIC__COUNT)
                ordo_config_topic(conf, name, topic, sizeof(topic));
        else
                snprintf(topic, sizeof(topic), "%s", name);
        rk = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                     sizeof(errstr));
        codec = ordo_codec_new(errstr, sizeof(errstr));
        if (!rk || !codec) {
                fprintf(stderr, "ordo replay: %s\n", errstr);
                return 1;
        }
        np = ordo_kafka_partitions(rk, topic, errstr, sizeof(errstr));
        if (np < 0) {
                fprintf(stderr, "ordo replay: %s\n", errstr);
                rc = 1;
        }
        for (i = 0; i < np && !rc && !ordo_stop; i++)
                if (replay_partition(rk, codec, topic, i, &o))
                        rc = 1;
        fflush(stdout);
        fprintf(stderr,
                "ordo replay: %s: %lld message(s), %lld "
                "undecodable\n",
                topic, (long long)o.printed, (long long)o.undecodable);
        rd_kafka_destroy(rk);
        ordo_codec_destroy(codec);
        return rc;
}
