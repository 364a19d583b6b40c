/*
 * ordo replay: a topic decoded to JSON lines, for analysts. Partitions
 * are read one after the other, each in offset order, up to its stable
 * end: the end it had when its turn came, once every transaction open
 * below that end has finished (read_committed, so aborted transactions
 * never show and committed ones are never cut short).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "commands.h"
#include "json_out.h"
#include "kafka.h"
#include "kafka_io.h"

/* How long a transaction open at the start may keep a partition's end
 * unstable before replay gives up (the broker aborts it after
 * transaction.timeout.ms anyway; ordo's producers use 20 s). */
#define STABLE_WAIT_MS 120000

typedef struct {
        int64_t from_offset, from_ts, to_ts;
        int to_ts_set;     /* else no upper bound: INT64_MAX is a valid ts_ms */
        int32_t partition; /* -1: every partition */
        int meta;
        const char *topic;
        int64_t printed, undecodable;
        int deleted; /* partitions whose records asked for were deleted */
} replay_opts_t;

/* A header as a string ("" when missing), cut to fit buf. */
static const char *header(const rd_kafka_message_t *m, const char *name,
                          char *buf, size_t size) {
        size_t n = 0;
        const void *v = ordo_kafka_header(m, name, &n);
        if (n >= size)
                n = size - 1;
        if (v)
                memcpy(buf, v, n);
        buf[v ? n : 0] = '\0';
        return buf;
}

/* The key as a JSON string (bytes that are not UTF-8 become U+FFFD, as
 * in the message fields), or null for a message without one. */
static json_t *key_json(const rd_kafka_message_t *m) {
        const unsigned char *k = m->key;
        char *s;
        size_t i = 0, n = 0, seq;
        json_t *j;

        if (!k)
                return json_null();
        s = malloc(m->key_len * 3 + 1);
        if (!s)
                return json_null();
        while (i < m->key_len) {
                seq = k[i] ? ordo__utf8_seq(k + i, m->key_len - i) : 0;
                if (seq == 0) {
                        memcpy(s + n, "\xEF\xBF\xBD", 3);
                        n += 3;
                        i++;
                } else {
                        memcpy(s + n, k + i, seq);
                        n += seq;
                        i += seq;
                }
        }
        j = json_stringn(s, n);
        free(s);
        return j ? j : json_null();
}

/* Where a message is: topic, partition, offset, key. */
static void set_meta(json_t *o, const replay_opts_t *opt,
                     const rd_kafka_message_t *m) {
        json_object_set_new(o, "topic", json_string(opt->topic));
        json_object_set_new(o, "partition", json_integer(m->partition));
        json_object_set_new(o, "offset", json_integer(m->offset));
        json_object_set_new(o, "key", key_json(m));
}

/* A line for what cannot be decoded (dead letters, foreign writers). */
/* A dead letter's headers (stream.c, project_loop.c), as they are: why
 * it was refused and where it was read. */
static void set_dead_letter(json_t *o, const rd_kafka_message_t *m) {
        static const char *const names[][2] = {
                { "ordo.kind", "kind" },
                { "ordo.error", "error" },
                { "ordo.source.topic", "source_topic" },
                { "ordo.source.partition", "source_partition" },
                { "ordo.source.offset", "source_offset" },
                { "ordo.stage", "stage" },
                /* bytes left out of a letter too large, by length */
                { "ordo.payload.omitted", "payload_omitted" },
                { "ordo.key.omitted", "key_omitted" },
                { "ordo.type.omitted", "type_omitted" },
        };
        char buf[512];
        size_t i;
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                header(m, names[i][0], buf, sizeof(buf));
                if (buf[0])
                        json_object_set_new(o, names[i][1], json_string(buf));
        }
}

static void print_undecodable(const replay_opts_t *opt,
                              const rd_kafka_message_t *m, const char *reason) {
        json_t *o = json_object();
        char *s;
        if (opt->meta)
                set_meta(o, opt, m);
        json_object_set_new(o, "undecodable", json_string(reason));
        if (!opt->meta) { /* where it is, even so */
                set_meta(o, opt, m);
                json_object_del(o, "topic");
        }
        set_dead_letter(o, m);
        s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s)
                puts(s);
        free(s);
        json_decref(o);
}

/* A decoded message: its fields as the .avsc of its writer's version
 * has them, after the message's place when --meta asks for it; a dead
 * letter's reason and source after them, as "dead_letter" (a refused
 * input decodes: an unexpected type, a wrong partition, an event a
 * store refused). */
static void print_msg(const replay_opts_t *opt, const ordo_codec_t *codec,
                      const rd_kafka_message_t *m, const ordo_msg_t *msg) {
        size_t n;
        const ordo_field_t *f = ordo_codec_writer_fields(
            codec, ordo_codec_writer_fingerprint(m->payload, m->len), msg->type,
            &n);
        char *body = ordo_msg_to_json_full(msg, f, n), *where = NULL;
        char *dead = NULL, why[512];
        const char *b = body;
        json_t *o;

        if (!body)
                return;
        if (msg->type == ORDO_MSG_TICK && !opt->meta) {
                /* Where it goes back to when produced again (decision
                 * 0030); --meta says it anyway. */
                size_t len = strlen(body);
                char *t = malloc(len + 32);
                if (!t) {
                        free(body);
                        return;
                }
                snprintf(t, len + 32, "%.*s,\"partition\":%d}", (int)len - 1,
                         body, (int)m->partition);
                free(body);
                b = body = t;
        }
        if (opt->meta) {
                o = json_object();
                set_meta(o, opt, m);
                where = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(o);
        }
        header(m, "ordo.error", why, sizeof(why));
        if (why[0]) {
                o = json_object();
                set_dead_letter(o, m);
                dead = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(o);
        }
        /* {"topic":...,"key":...} + ,"type":...} + ,"dead_letter":{...} */
        if (where) {
                printf("%.*s,", (int)strlen(where) - 1, where);
                b = body + 1;
        }
        if (dead)
                printf("%.*s,\"dead_letter\":%s}\n", (int)strlen(b) - 1, b,
                       dead);
        else
                puts(b);
        free(dead);
        free(where);
        free(body);
}

static int replay_partition(rd_kafka_t *rk, rd_kafka_t *wm, ordo_codec_t *codec,
                            const char *topic, int32_t part, replay_opts_t *o) {
        /* The end it has now, once no transaction is open below it
         * (docs/decisions/0017); later messages are the next replay's. */
        const ordo_stable_end_opts_t so = { "replay", 0, STABLE_WAIT_MS,
                                            &ordo_stop };
        ordo_kafka_reader_t r;
        rd_kafka_message_t *m;
        int64_t lo, end;
        char why[256];
        int rc = 0;

        if (ordo_kafka_stable_end(rk, wm, topic, part, &so, &lo, &end, why,
                                  sizeof(why))) {
                fprintf(stderr, "ordo replay: %s\n", why);
                return -1;
        }
        if (lo > 0 && o->from_offset < lo) {
                fprintf(stderr,
                        "ordo replay: %s [%d] begins at offset %" PRId64
                        ": the records below were deleted (a retention "
                        "limit?)\n",
                        topic, (int)part, lo);
                o->deleted++;
        }
        if (end <= lo || end <= o->from_offset)
                return 0;
        ordo_kafka_reader_open(&r, rk, topic, part,
                               o->from_offset > lo ? o->from_offset : lo, end,
                               "replay");
        while (
            (m = ordo_kafka_reader_await(&r, ORDO_READ_IDLE_MS, &ordo_stop))) {
                ordo_msg_t msg;
                if (!m->payload || ordo_codec_decode(codec, m->payload, m->len,
                                                     &msg, why, sizeof(why))) {
                        print_undecodable(o, m, m->payload ? why : "empty");
                        o->undecodable++;
                } else if (msg.meta.ts_ms >= o->from_ts &&
                           (!o->to_ts_set || msg.meta.ts_ms < o->to_ts)) {
                        print_msg(o, codec, m, &msg);
                        o->printed++;
                }
                rd_kafka_message_destroy(m);
                if (ferror(stdout)) /* main says so; reading on is vain */
                        break;
        }
        if (ferror(stdout))
                rc = -1;
        if (r.stalled) {
                fprintf(stderr,
                        "ordo replay: %s [%d]: nothing read for %d s before "
                        "offset %" PRId64 "\n",
                        topic, (int)part, ORDO_READ_IDLE_MS / 1000, end);
                rc = -1;
        }
        ordo_kafka_reader_close(&r);
        return ordo_stop ? -1 : rc;
}

/* An integer option value of at least min. */
static int parse_int(const char *opt, const char *v, int64_t min,
                     int64_t *out) {
        char *end;
        errno = 0;
        *out = strtoll(v, &end, 10);
        if (!*v || *end || *out < min || errno == ERANGE) {
                fprintf(stderr,
                        "ordo replay: %s: expected an integer from %" PRId64
                        " to %" PRId64 ", got \"%s\"\n",
                        opt, min, (int64_t)INT64_MAX, v);
                return -1;
        }
        return 0;
}

static void usage_more(void) {
        printf("\nTOPIC is a short name (order-events) or a full one "
               "(ordo.order-events).\n"
               "Each message becomes one JSON object on stdout: its "
               "\"type\" and every field\n"
               "of schemas/<type>.avsc, empty strings included (a message "
               "written with a\nprevious version, schemas/previous/, has "
               "that version's fields). "
               "Partitions one after the\n"
               "other, offsets in order, each up to its stable end: the "
               "end it has when its\n"
               "turn comes, once every transaction open below it has "
               "finished (read_committed;\n"
               "waits up to 120 s). A message that does not decode (the "
               "dead-letters topic)\n"
               "becomes {\"undecodable\": reason, \"partition\", "
               "\"offset\", \"key\", \"error\",\n"
               "\"source_topic\", ...}; a dead letter that decodes gets "
               "its fields and\n\"dead_letter\": {\"error\", "
               "\"source_topic\", ...} last. stderr gets a count at the "
               "end.\n\n"
               "  --meta            put \"topic\", \"partition\", "
               "\"offset\" and \"key\" first on every line\n"
               "  --partition N     read partition N only\n"
               "  --from-offset N   start at offset N of every partition "
               "read\n"
               "  --from-ts TIME    only messages with ts_ms >= TIME\n"
               "  --to-ts TIME      only messages with ts_ms < TIME\n"
               "TIME is ms since the epoch (1795356000000) or ISO-8601 "
               "with a zone\n"
               "(2026-12-04T03:00:00Z, 2026-12-04T04:00:00.250+01:00). "
               "The times filter on\n"
               "ts_ms, the business time; every partition is still read "
               "from its start\n"
               "(or --from-offset).\n"
               "Exit status: 0 done, 1 Kafka failed, stopped by a signal "
               "or records asked for\nwere deleted (the output is "
               "incomplete), 2 usage error (a topic Kafka does\nnot "
               "have, too).\n");
}

int ordo_cmd_replay(ordo_config_t *conf, int argc, char **argv) {
        replay_opts_t o = { 0, INT64_MIN, INT64_MAX, 0, -1, 0, NULL, 0, 0, 0 };
        const char *name = NULL;
        char topic[256], errstr[512];
        rd_kafka_t *rk = NULL, *wm = NULL;
        ordo_codec_t *codec = NULL;
        int i, np, rc = 0, from_offset_set = 0, from_ts_set = 0;
        int64_t v;

        if (ordo_wants_help(argc, argv)) {
                usage_more();
                return 0;
        }
        for (i = 1; i < argc; i++) {
                const char *a = argv[i],
                           *val = i + 1 < argc ? argv[i + 1] : NULL;
                int takes = !strcmp(a, "--from-offset") ||
                            !strcmp(a, "--from-ts") || !strcmp(a, "--to-ts") ||
                            !strcmp(a, "--partition");
                if (takes && !val) {
                        fprintf(stderr, "ordo replay: %s needs a value\n", a);
                        return 2;
                }
                if (takes && ordo_option_repeated(argv, i, "replay"))
                        return 2;
                if (!strcmp(a, "--meta")) {
                        o.meta = 1;
                        continue;
                }
                if (!strcmp(a, "--from-offset")) {
                        if (parse_int(a, val, 0, &o.from_offset))
                                return 2;
                        from_offset_set = 1;
                } else if (!strcmp(a, "--partition")) {
                        if (parse_int(a, val, 0, &v))
                                return 2;
                        if (v > INT32_MAX) {
                                fprintf(stderr,
                                        "ordo replay: --partition: %s is "
                                        "out of range\n",
                                        val);
                                return 2;
                        }
                        o.partition = (int32_t)v;
                } else if (!strcmp(a, "--from-ts")) {
                        if (ordo_option_time("replay", a, val, &o.from_ts))
                                return 2;
                        from_ts_set = 1;
                } else if (!strcmp(a, "--to-ts")) {
                        if (ordo_option_time("replay", a, val, &o.to_ts))
                                return 2;
                        o.to_ts_set = 1;
                } else if (a[0] == '-' && a[1]) {
                        fprintf(stderr,
                                "ordo replay: unknown option %s (see ordo "
                                "replay --help)\n",
                                a);
                        return 2;
                } else if (!name) {
                        name = a;
                        continue;
                } else {
                        fprintf(stderr,
                                "ordo replay: one TOPIC only (got \"%s\" "
                                "and \"%s\")\n",
                                name, a);
                        return 2;
                }
                i++; /* the value */
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
        if (o.to_ts_set && o.to_ts <= o.from_ts) {
                fprintf(stderr,
                        "ordo replay: --to-ts (%" PRId64
                        ") must be after --from-ts (%" PRId64 ")\n",
                        o.to_ts, o.from_ts);
                return 2;
        }
        if (!name[0]) {
                fprintf(stderr, "ordo replay: TOPIC is empty\n");
                return 2;
        }
        if (ordo_topic_is_snapshots(ordo_topic_from_short(name)) ||
            (!strncmp(name, ordo_config_get(conf, "topic.prefix"),
                      strlen(ordo_config_get(conf, "topic.prefix"))) &&
             ordo_topic_is_snapshots(ordo_topic_from_short(
                 name + strlen(ordo_config_get(conf, "topic.prefix")))))) {
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
        o.topic = topic;
        codec = ordo_codec_new(errstr, sizeof(errstr));
        if (codec)
                rk = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                             sizeof(errstr));
        if (rk)
                wm = ordo_kafka_watermark_client_new(conf, errstr,
                                                     sizeof(errstr));
        if (!wm) {
                fprintf(stderr, "ordo replay: %s\n", errstr);
                rc = 1;
                goto out;
        }
        np = ordo_kafka_partitions_of_existing(rk, topic, errstr,
                                               sizeof(errstr));
        if (np < 0) {
                fprintf(stderr, "ordo replay: %s\n", errstr);
                rc = np == -2 ? 2 : 1; /* no such topic: a usage error */
                goto out;
        }
        if (o.partition >= np) {
                fprintf(stderr,
                        "ordo replay: --partition %d: %s has %d "
                        "partition(s), 0 to %d\n",
                        (int)o.partition, topic, np, np - 1);
                rc = 2;
                goto out;
        }
        for (i = 0; i < np && !rc && !ordo_stop; i++)
                if ((o.partition < 0 || i == o.partition) &&
                    replay_partition(rk, wm, codec, topic, i, &o))
                        rc = 1;
        fflush(stdout);
        fprintf(stderr,
                "ordo replay: %s: %lld message(s), %lld of them "
                "undecodable%s%s\n",
                topic, (long long)(o.printed + o.undecodable),
                (long long)o.undecodable,
                ordo_stop ? "; stopped by a signal before the end: the "
                            "output is incomplete"
                          : "",
                o.deleted && !ordo_stop ? "; records asked for were deleted "
                                          "(above): the output is incomplete"
                                        : "");
        if (ordo_stop || o.deleted)
                rc = 1;
out:
        if (wm)
                rd_kafka_destroy(wm);
        if (rk)
                rd_kafka_destroy(rk);
        if (codec)
                ordo_codec_destroy(codec);
        return rc;
}
