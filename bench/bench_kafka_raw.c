/*
 * bench_kafka_raw - what the local Kafka broker can move with librdkafka
 * alone (issue #7), so the flash-sale report can say how close ordo comes
 * to it: the same message size, keys, producer settings and consumer
 * isolation as ordo's command topics, and nothing else (no codec, no
 * rules, no read models).
 *
 * Workload it is tuned for: one process, one producer and then one
 * consumer on a private topic ("rawbench.<pid>.<time>", replication 1)
 * that it creates, waits for, and deletes again. Producer: acks=all,
 * enable.idempotence=true, linger.ms=5, compression none, the murmur2
 * partitioner, keys like ordo's 18-character generated order ids spread
 * over --key-space keys, the "ordo.type" header ordo puts on every message.
 * With --transactional a transaction is committed every --batch messages,
 * one after the other, as ordo's stream loop does; that is the price of
 * exactly-once here. Consumer: read_committed, all partitions assigned from
 * the beginning (no group join), fetch.wait.max.ms 10 as in ordo.
 *
 * Default --size 96: a PlaceOrder as the gateway sends it (generated
 * command and order ids of 18 bytes, as they were when it was measured
 * (session 11; 22 since session 21, 104 bytes), activity
 * "act-double11-phone", user
 * "wx-oA3f9x-00042", qty 1) encodes to 96 bytes with schemas/codec.c
 * (Avro single-object encoding, 10 of them header).
 *
 * Output: a summary on stderr, one JSON line on stdout (see usage()).
 */
#include <librdkafka/rdkafka.h>

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_args.h"

#define DEFAULT_SIZE    96
#define KEY_LEN         18    /* ORDO_IDGEN_LEN until session 21 (now 22) */
#define CONNECT_TIMEOUT 8000  /* ms: a dead broker fails in ~10 s */
#define ADMIN_TIMEOUT   10000 /* ms */
#define LEADER_TIMEOUT  10000 /* ms */
#define STALL_TIMEOUT   15000 /* ms without progress: give up */
#define FLUSH_TIMEOUT   60000 /* ms */
#define TXN_TIMEOUT     30000 /* ms for init/commit/abort */
#define MAX_MESSAGES    1000000000L
#define MAX_SIZE        (900 * 1000) /* under message.max.bytes (1 MB) */

typedef struct opts_s {
        const char *bootstrap;
        long partitions, messages, size, key_space, batch;
        int transactional, header;
} opts_t;

typedef struct produce_state_s {
        long delivered, failed;
        rd_kafka_resp_err_t first_err;
        double last_ns; /* when the last delivery report came */
        long expected;
} produce_state_t;

typedef struct figures_s {
        double produce_s, consume_s, commit_ms_total;
        long commits, consumed;
        size_t consumed_bytes;
} figures_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
        (void)sig;
        interrupted = 1;
}

static void usage(FILE *f) {
        fprintf(
            f,
            "usage: bench_kafka_raw [--bootstrap B] [--partitions P] "
            "[--messages N]\n"
            "                       [--size BYTES] [--key-space K] "
            "[--transactional]\n"
            "                       [--batch N] [--no-header]\n"
            "\n"
            "Producer and consumer throughput of a Kafka broker with "
            "librdkafka alone,\n"
            "with ordo's producer settings, on a private topic it creates and "
            "deletes.\n"
            "\n"
            "  --bootstrap B    bootstrap servers "
            "(ORDO_KAFKA_BOOTSTRAP_SERVERS, else\n"
            "                   127.0.0.1:9092)\n"
            "  --partitions P   partitions of the topic (ORDO_PARTITIONS, else "
            "6)\n"
            "  --messages N     messages to produce and read back (default "
            "1000000)\n"
            "  --size BYTES     value size (default %d: an ordo PlaceOrder as "
            "the\n"
            "                   gateway encodes it)\n"
            "  --key-space K    distinct keys, 18-byte order-id-like strings "
            "(default\n"
            "                   100000)\n"
            "  --transactional  produce in transactions, committing every "
            "--batch\n"
            "                   messages before starting the next\n"
            "  --batch N        messages per transaction (default 1000)\n"
            "  --no-header      leave out the \"ordo.type\" header ordo sends\n"
            "  -h, --help       this text\n"
            "\n"
            "Producer: acks=all, enable.idempotence=true, linger.ms=5, "
            "compression\n"
            "none, murmur2_random partitioner. Timed from the first produce "
            "call to\n"
            "the last delivery report (or the last commit). Consumer: "
            "read_committed,\n"
            "all partitions assigned from the beginning; timed from the first "
            "message\n"
            "to the last.\n"
            "\n"
            "One warm-up message (in its own transaction with --transactional) "
            "is\n"
            "produced before the clock starts and read back with the others.\n"
            "\n"
            "Output: one JSON line on stdout: messages, size, partitions,\n"
            "transactional, batch, key_space, produce_seconds, "
            "produce_msgs_per_s,\n"
            "produce_mb_per_s, commits, commit_ms_avg, consume_seconds,\n"
            "consume_msgs_per_s, consume_mb_per_s. MB is 10^6 bytes of "
            "message\n"
            "values (keys and headers not counted).\n"
            "\n"
            "Exit status: 0 ok, 2 usage error, 3 Kafka error (the topic is "
            "deleted\n"
            "whenever it was created).\n",
            DEFAULT_SIZE);
}

static double now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* conf set that prints what went wrong; 0 or -1. */
static int conf_set(rd_kafka_conf_t *conf, const char *name,
                    const char *value) {
        char errstr[512];

        if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
                fprintf(stderr, "bench_kafka_raw: %s=%s: %s\n", name, value,
                        errstr);
                return -1;
        }
        return 0;
}

/* Transport errors are reported once, not at every reconnect attempt. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason,
                     void *opaque) {
        static int said;

        (void)rk;
        (void)opaque;
        if (err == RD_KAFKA_RESP_ERR__FATAL || !said++)
                fprintf(stderr, "bench_kafka_raw: %s: %s\n",
                        rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* A client with bootstrap servers and the pairs (name, value, ..., NULL);
 * NULL after printing why. */
static rd_kafka_t *
client_new(rd_kafka_type_t type, const opts_t *o, const char *const *pairs,
           void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *, void *),
           void *opaque) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        char errstr[512];
        rd_kafka_t *rk;

        if (conf_set(conf, "bootstrap.servers", o->bootstrap) ||
            conf_set(conf, "log.connection.close", "false"))
                goto fail;
        for (; pairs && pairs[0]; pairs += 2)
                if (conf_set(conf, pairs[0], pairs[1]))
                        goto fail;
        rd_kafka_conf_set_error_cb(conf, error_cb);
        if (dr_cb)
                rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
        rd_kafka_conf_set_opaque(conf, opaque);
        rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
        if (!rk) {
                fprintf(stderr, "bench_kafka_raw: rd_kafka_new: %s\n", errstr);
                goto fail;
        }
        return rk;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

/*
 * Topic: create, wait for leaders, delete
 */

/* The result event of an admin call, or NULL after printing a timeout. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q, const char *what) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, ADMIN_TIMEOUT + 5000);

        if (!ev)
                fprintf(stderr, "bench_kafka_raw: %s: no answer in %d s\n",
                        what, (ADMIN_TIMEOUT + 5000) / 1000);
        return ev;
}

static rd_kafka_AdminOptions_t *admin_options(rd_kafka_t *rk,
                                              rd_kafka_admin_op_t op) {
        rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, op);
        char errstr[256];

        rd_kafka_AdminOptions_set_request_timeout(ao, ADMIN_TIMEOUT, errstr,
                                                  sizeof(errstr));
        rd_kafka_AdminOptions_set_operation_timeout(ao, ADMIN_TIMEOUT, errstr,
                                                    sizeof(errstr));
        return ao;
}

static int topic_create(rd_kafka_t *rk, const char *topic, long partitions) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *ao =
            admin_options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        char errstr[256];
        rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(
            topic, (int)partitions, 1, errstr, sizeof(errstr));
        rd_kafka_event_t *ev;
        int rc = -1;

        if (!nt) {
                fprintf(stderr, "bench_kafka_raw: topic %s: %s\n", topic,
                        errstr);
                goto out;
        }
        rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
        ev = admin_wait(q, "CreateTopics");
        if (ev) {
                const rd_kafka_CreateTopics_result_t *res =
                    rd_kafka_event_CreateTopics_result(ev);
                const rd_kafka_topic_result_t **tr;
                size_t n = 0;

                if (rd_kafka_event_error(ev))
                        fprintf(stderr,
                                "bench_kafka_raw: CreateTopics %s: %s\n", topic,
                                rd_kafka_event_error_string(ev));
                else if (res &&
                         (tr = rd_kafka_CreateTopics_result_topics(res, &n)) &&
                         n == 1 && rd_kafka_topic_result_error(tr[0]))
                        fprintf(stderr,
                                "bench_kafka_raw: CreateTopics %s: %s\n", topic,
                                rd_kafka_topic_result_error_string(tr[0]));
                else
                        rc = 0;
                rd_kafka_event_destroy(ev);
        }
out:
        rd_kafka_NewTopic_destroy(nt); /* NULL ok */
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_queue_destroy(q);
        return rc;
}

/* Until every partition has a leader: a produce before that would only
 * wait inside librdkafka and be timed. */
static int topic_wait_leaders(rd_kafka_t *rk, const char *topic,
                              long partitions) {
        double deadline = now_ns() + LEADER_TIMEOUT * 1e6;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        const char *why = "no metadata";

        while (now_ns() < deadline && !interrupted) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t err =
                    rd_kafka_metadata(rk, 0, rkt, &md, 2000);
                int ok = 0;

                if (err)
                        why = rd_kafka_err2str(err);
                else if (md->topic_cnt != 1 || md->topics[0].err)
                        why = md->topic_cnt == 1
                                  ? rd_kafka_err2str(md->topics[0].err)
                                  : "topic missing";
                else if (md->topics[0].partition_cnt != partitions)
                        why = "partitions missing";
                else {
                        int i;

                        ok = 1;
                        for (i = 0; i < md->topics[0].partition_cnt; i++)
                                if (md->topics[0].partitions[i].leader < 0 ||
                                    md->topics[0].partitions[i].err)
                                        ok = 0;
                        why = "partition without a leader";
                }
                if (md)
                        rd_kafka_metadata_destroy(md);
                if (ok) {
                        rd_kafka_topic_destroy(rkt);
                        return 0;
                }
                usleep(100 * 1000);
        }
        fprintf(stderr, "bench_kafka_raw: topic %s not ready in %d s: %s\n",
                topic, LEADER_TIMEOUT / 1000, why);
        rd_kafka_topic_destroy(rkt);
        return -1;
}

static void topic_delete(rd_kafka_t *rk, const char *topic) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AdminOptions_t *ao =
            admin_options(rk, RD_KAFKA_ADMIN_OP_DELETETOPICS);
        rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
        rd_kafka_event_t *ev;

        rd_kafka_DeleteTopics(rk, &dt, 1, ao, q);
        ev = admin_wait(q, "DeleteTopics");
        if (ev) {
                const rd_kafka_DeleteTopics_result_t *res =
                    rd_kafka_event_DeleteTopics_result(ev);
                const rd_kafka_topic_result_t **tr;
                size_t n = 0;

                if (rd_kafka_event_error(ev))
                        fprintf(stderr,
                                "bench_kafka_raw: DeleteTopics %s: %s\n", topic,
                                rd_kafka_event_error_string(ev));
                else if (res &&
                         (tr = rd_kafka_DeleteTopics_result_topics(res, &n)) &&
                         n == 1 && rd_kafka_topic_result_error(tr[0]))
                        fprintf(stderr,
                                "bench_kafka_raw: DeleteTopics %s: %s\n", topic,
                                rd_kafka_topic_result_error_string(tr[0]));
                else
                        fprintf(stderr, "  deleted topic %s\n", topic);
                rd_kafka_event_destroy(ev);
        } else
                fprintf(stderr, "bench_kafka_raw: delete topic %s by hand\n",
                        topic);
        rd_kafka_DeleteTopic_destroy(dt);
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_queue_destroy(q);
}

/*
 * Producer
 */

static void delivery_cb(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
        produce_state_t *s = opaque;

        (void)rk;
        if (m->err) {
                if (!s->failed++)
                        s->first_err = m->err;
        } else
                s->delivered++;
        if (s->delivered + s->failed == s->expected)
                s->last_ns = now_ns();
}

/* Key i as a Crockford base32 order id: 'o', then 17 characters. */
static void make_key(long i, char *key) {
        static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        unsigned long long v = (unsigned long long)i;
        int k;

        key[0] = 'o';
        for (k = KEY_LEN - 1; k >= 1; k--) {
                key[k] = b32[v & 31];
                v >>= 5;
        }
}

/* One message; waits for room when the local queue is full. */
static int produce_one(rd_kafka_t *rk, const char *topic, const opts_t *o,
                       const char *value, long i) {
        char key[KEY_LEN];
        rd_kafka_resp_err_t err;

        make_key(i % o->key_space, key);
        for (;;) {
                if (o->header)
                        err = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_KEY(key, KEY_LEN),
                            RD_KAFKA_V_VALUE((void *)value, (size_t)o->size),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_HEADER("ordo.type", "PlaceOrder", -1),
                            RD_KAFKA_V_END);
                else
                        err = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(topic),
                            RD_KAFKA_V_KEY(key, KEY_LEN),
                            RD_KAFKA_V_VALUE((void *)value, (size_t)o->size),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_END);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                        break;
                rd_kafka_poll(rk, 5); /* back-pressure */
        }
        if (err) {
                fprintf(stderr, "bench_kafka_raw: produce: %s\n",
                        rd_kafka_err2str(err));
                return -1;
        }
        if ((i & 255) == 0)
                rd_kafka_poll(rk, 0);
        return 0;
}

/* Prints and frees a transactional API error; always -1. */
static int txn_fail(const char *what, rd_kafka_error_t *error) {
        fprintf(stderr, "bench_kafka_raw: %s: %s%s\n", what,
                rd_kafka_error_string(error),
                rd_kafka_error_is_fatal(error) ? " (fatal)" : "");
        rd_kafka_error_destroy(error);
        return -1;
}

static int produce_all(const opts_t *o, const char *topic, figures_t *fig) {
        char txid[160];
        const char *pairs[] = { "acks",
                                "all",
                                "enable.idempotence",
                                "true",
                                "linger.ms",
                                "5",
                                "compression.type",
                                "none",
                                "partitioner",
                                "murmur2_random",
                                "message.timeout.ms",
                                "60000",
                                "transaction.timeout.ms",
                                "60000",
                                o->transactional ? "transactional.id" : NULL,
                                txid,
                                NULL };
        produce_state_t st = { 0, 0, RD_KAFKA_RESP_ERR_NO_ERROR, 0, 1 };
        rd_kafka_t *rk;
        rd_kafka_error_t *error;
        char *value = malloc((size_t)o->size);
        double t0;
        long i;
        int rc = -1;

        snprintf(txid, sizeof(txid), "%s.tx", topic);
        if (!value) {
                fprintf(stderr, "bench_kafka_raw: out of memory\n");
                return -1;
        }
        /* Looks like single-object encoding; the bytes do not matter with
         * compression off. */
        for (i = 0; i < o->size; i++)
                value[i] = (char)(i < 2 ? (i ? 0x01 : 0xC3) : 'a' + i % 26);

        rk = client_new(RD_KAFKA_PRODUCER, o, pairs, delivery_cb, &st);
        if (!rk) {
                free(value);
                return -1;
        }

        if (o->transactional &&
            (error = rd_kafka_init_transactions(rk, TXN_TIMEOUT))) {
                txn_fail("init_transactions", error);
                goto out;
        }

        /* One message before the clock starts: the producer id, the
         * connections and (with transactions) the coordinator are ready
         * then, as in a long-running ordo stage. */
        if (o->transactional && (error = rd_kafka_begin_transaction(rk))) {
                txn_fail("begin_transaction", error);
                goto out;
        }
        if (produce_one(rk, topic, o, value, 0))
                goto failed;
        if (o->transactional &&
            (error = rd_kafka_commit_transaction(rk, TXN_TIMEOUT))) {
                txn_fail("commit_transaction (warm-up)", error);
                goto out;
        }
        if (rd_kafka_flush(rk, TXN_TIMEOUT) || st.delivered != 1) {
                fprintf(stderr, "bench_kafka_raw: the warm-up message was "
                                "not delivered\n");
                goto failed;
        }
        st.expected = o->messages + 1;

        t0 = now_ns();
        for (i = 0; i < o->messages && !interrupted;) {
                long end = o->transactional ? i + o->batch : o->messages;
                double c0;

                if (end > o->messages)
                        end = o->messages;
                if (o->transactional &&
                    (error = rd_kafka_begin_transaction(rk))) {
                        txn_fail("begin_transaction", error);
                        goto out;
                }
                for (; i < end && !interrupted; i++)
                        if (produce_one(rk, topic, o, value, i) || st.failed)
                                goto failed;
                if (!o->transactional)
                        break;
                c0 = now_ns();
                if ((error = rd_kafka_commit_transaction(rk, TXN_TIMEOUT))) {
                        txn_fail("commit_transaction", error);
                        goto out;
                }
                fig->commit_ms_total += (now_ns() - c0) / 1e6;
                fig->commits++;
        }
        if (interrupted)
                goto failed;
        if (rd_kafka_flush(rk, FLUSH_TIMEOUT)) {
                fprintf(stderr,
                        "bench_kafka_raw: %d messages not delivered in %d s\n",
                        rd_kafka_outq_len(rk), FLUSH_TIMEOUT / 1000);
                goto failed;
        }
        if (st.failed || st.delivered != o->messages + 1)
                goto failed;
        /* the last commit comes after the last delivery report */
        fig->produce_s =
            ((o->transactional ? now_ns() : st.last_ns) - t0) / 1e9;
        rc = 0;
        goto out;
failed:
        if (interrupted)
                fprintf(stderr, "bench_kafka_raw: interrupted\n");
        if (st.failed)
                fprintf(stderr,
                        "bench_kafka_raw: %ld messages failed, the first "
                        "with %s\n",
                        st.failed, rd_kafka_err2str(st.first_err));
        else if (!interrupted && st.delivered != o->messages + 1)
                fprintf(stderr,
                        "bench_kafka_raw: %ld of %ld messages delivered\n",
                        st.delivered - 1, o->messages);
        if (o->transactional &&
            (error = rd_kafka_abort_transaction(rk, TXN_TIMEOUT)))
                rd_kafka_error_destroy(error); /* nothing left to save */
out:
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(rk);
        free(value);
        return rc;
}

/*
 * Consumer
 */

static int consume_all(const opts_t *o, const char *topic, figures_t *fig) {
        char group[160];
        const char *pairs[] = { "group.id",
                                group,
                                "isolation.level",
                                "read_committed",
                                "enable.auto.commit",
                                "false",
                                "enable.auto.offset.store",
                                "false",
                                "auto.offset.reset",
                                "earliest",
                                "enable.partition.eof",
                                "false",
                                "fetch.wait.max.ms",
                                "10",
                                NULL };
        rd_kafka_topic_partition_list_t *parts;
        rd_kafka_resp_err_t err;
        rd_kafka_t *rk;
        double t_first = 0, t_last = 0, idle_since;
        long p;
        int rc = -1;

        snprintf(group, sizeof(group), "%s.g", topic);
        rk = client_new(RD_KAFKA_CONSUMER, o, pairs, NULL, NULL);
        if (!rk)
                return -1;
        rd_kafka_poll_set_consumer(rk);
        parts = rd_kafka_topic_partition_list_new((int)o->partitions);
        for (p = 0; p < o->partitions; p++)
                rd_kafka_topic_partition_list_add(parts, topic, (int32_t)p)
                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
        err = rd_kafka_assign(rk, parts);
        rd_kafka_topic_partition_list_destroy(parts);
        if (err) {
                fprintf(stderr, "bench_kafka_raw: assign: %s\n",
                        rd_kafka_err2str(err));
                goto out;
        }
        idle_since = now_ns();
        /* the warm-up message too */
        while (fig->consumed < o->messages + 1 && !interrupted) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                double t;

                if (!m) {
                        if (now_ns() - idle_since > STALL_TIMEOUT * 1e6) {
                                fprintf(stderr,
                                        "bench_kafka_raw: consumer stalled: "
                                        "%ld of %ld messages after %d s "
                                        "without one\n",
                                        fig->consumed, o->messages + 1,
                                        STALL_TIMEOUT / 1000);
                                goto out;
                        }
                        continue;
                }
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                fprintf(stderr,
                                        "bench_kafka_raw: consume: %s\n",
                                        rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                t = now_ns();
                if (!fig->consumed)
                        t_first = t;
                t_last = idle_since = t;
                fig->consumed++;
                fig->consumed_bytes += m->len;
                rd_kafka_message_destroy(m);
        }
        if (interrupted) {
                fprintf(stderr, "bench_kafka_raw: interrupted\n");
                goto out;
        }
        fig->consume_s = (t_last - t_first) / 1e9;
        rc = 0;
out:
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return rc;
}

/*
 * main
 */

static int parse_args(int argc, char **argv, opts_t *o) {
        static const struct {
                const char *name;
                size_t off;
                long lo, hi;
        } nums[] = {
                { "--partitions", offsetof(opts_t, partitions), 1, 10000 },
                { "--messages", offsetof(opts_t, messages), 1, MAX_MESSAGES },
                { "--size", offsetof(opts_t, size), 1, MAX_SIZE },
                { "--key-space", offsetof(opts_t, key_space), 1, MAX_MESSAGES },
                { "--batch", offsetof(opts_t, batch), 1, MAX_MESSAGES },
        };
        const char *env;
        int i;
        size_t k;

        o->bootstrap = (env = getenv("ORDO_KAFKA_BOOTSTRAP_SERVERS")) && *env
                           ? env
                           : "127.0.0.1:9092";
        o->partitions = 6;
        if ((env = getenv("ORDO_PARTITIONS")) && *env &&
            parse_long(env, 1, 10000, &o->partitions)) {
                fprintf(stderr,
                        "bench_kafka_raw: ORDO_PARTITIONS: not 1..10000\n");
                return -1;
        }
        o->messages = 1000000;
        o->size = DEFAULT_SIZE;
        o->key_space = 100000;
        o->batch = 1000;
        o->header = 1;
        for (i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        usage(stdout);
                        exit(0);
                }
                if (!strcmp(a, "--transactional")) {
                        o->transactional = 1;
                        continue;
                }
                if (!strcmp(a, "--no-header")) {
                        o->header = 0;
                        continue;
                }
                if (i + 1 >= argc) {
                        fprintf(stderr,
                                "bench_kafka_raw: %s: unknown or without a "
                                "value (--help)\n",
                                a);
                        return -1;
                }
                if (!strcmp(a, "--bootstrap")) {
                        o->bootstrap = argv[++i];
                        continue;
                }
                for (k = 0; k < sizeof(nums) / sizeof(*nums); k++)
                        if (!strcmp(a, nums[k].name))
                                break;
                if (k == sizeof(nums) / sizeof(*nums)) {
                        fprintf(stderr,
                                "bench_kafka_raw: unknown option %s "
                                "(--help)\n",
                                a);
                        return -1;
                }
                if (parse_long(argv[++i], nums[k].lo, nums[k].hi,
                               (long *)((char *)o + nums[k].off))) {
                        fprintf(stderr, "bench_kafka_raw: %s: %ld..%ld\n", a,
                                nums[k].lo, nums[k].hi);
                        return -1;
                }
        }
        return 0;
}

static void print_json(const opts_t *o, const figures_t *f) {
        double mb = (double)o->messages * (double)o->size / 1e6;

        printf("{\"messages\":%ld,\"size\":%ld,\"partitions\":%ld,"
               "\"transactional\":%s,\"batch\":%ld,\"key_space\":%ld,"
               "\"produce_seconds\":%.4f,\"produce_msgs_per_s\":%.0f,"
               "\"produce_mb_per_s\":%.2f,\"commits\":%ld,"
               "\"commit_ms_avg\":%.2f,\"consume_seconds\":%.4f,"
               "\"consume_msgs_per_s\":%.0f,\"consume_mb_per_s\":%.2f}\n",
               o->messages, o->size, o->partitions,
               o->transactional ? "true" : "false",
               o->transactional ? o->batch : 0, o->key_space, f->produce_s,
               f->produce_s > 0 ? (double)o->messages / f->produce_s : 0,
               f->produce_s > 0 ? mb / f->produce_s : 0, f->commits,
               f->commits ? f->commit_ms_total / (double)f->commits : 0,
               f->consume_s,
               f->consume_s > 0 ? (double)o->messages / f->consume_s : 0,
               f->consume_s > 0 ? mb / f->consume_s : 0);
        fflush(stdout);
}

int main(int argc, char **argv) {
        const char *admin_pairs[] = { "socket.connection.setup.timeout.ms",
                                      "8000", NULL };
        const struct rd_kafka_metadata *md;
        struct sigaction sa;
        figures_t fig;
        opts_t o;
        rd_kafka_t *admin;
        rd_kafka_resp_err_t err;
        char topic[128];
        int rc = 3;

        memset(&o, 0, sizeof(o));
        memset(&fig, 0, sizeof(fig));
        if (parse_args(argc, argv, &o))
                return 2;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);

        admin = client_new(RD_KAFKA_PRODUCER, &o, admin_pairs, NULL, NULL);
        if (!admin)
                return 3;
        /* Fail fast on a dead broker: librdkafka itself would retry
         * forever. */
        err = rd_kafka_metadata(admin, 0, NULL, &md, CONNECT_TIMEOUT);
        if (err) {
                fprintf(stderr,
                        "bench_kafka_raw: cannot reach Kafka at %s in %d s: "
                        "%s\n",
                        o.bootstrap, CONNECT_TIMEOUT / 1000,
                        rd_kafka_err2str(err));
                rd_kafka_destroy(admin);
                return 3;
        }
        rd_kafka_metadata_destroy(md);

        snprintf(topic, sizeof(topic), "rawbench.%ld.%ld", (long)getpid(),
                 (long)time(NULL));
        if (topic_create(admin, topic, o.partitions)) {
                rd_kafka_destroy(admin);
                return 3;
        }
        fprintf(stderr,
                "bench_kafka_raw: topic %s, %ld partitions, %s; %ld messages "
                "of %ld bytes, %ld keys%s\n",
                topic, o.partitions, o.bootstrap, o.messages, o.size,
                o.key_space, o.transactional ? ", transactional" : "");
        if (topic_wait_leaders(admin, topic, o.partitions) == 0 &&
            produce_all(&o, topic, &fig) == 0 &&
            consume_all(&o, topic, &fig) == 0) {
                double mb = (double)o.messages * (double)o.size / 1e6;

                fprintf(stderr, "  produce: %.3f s, %.0f msgs/s, %.1f MB/s",
                        fig.produce_s, (double)o.messages / fig.produce_s,
                        mb / fig.produce_s);
                if (o.transactional)
                        fprintf(stderr,
                                "; %ld transactions of %ld, commit %.1f ms "
                                "on average",
                                fig.commits, o.batch,
                                fig.commit_ms_total / (double)fig.commits);
                fprintf(stderr,
                        "\n  consume (read_committed): %.3f s, %.0f msgs/s, "
                        "%.1f MB/s, %zu value bytes\n",
                        fig.consume_s, (double)o.messages / fig.consume_s,
                        mb / fig.consume_s, fig.consumed_bytes);
                if (fig.consumed_bytes !=
                    (size_t)(o.messages + 1) * (size_t)o.size)
                        fprintf(stderr,
                                "bench_kafka_raw: read back %zu bytes, "
                                "not %zu\n",
                                fig.consumed_bytes,
                                (size_t)(o.messages + 1) * (size_t)o.size);
                else {
                        print_json(&o, &fig);
                        rc = 0;
                }
        }
        topic_delete(admin, topic);
        rd_kafka_destroy(admin);
        return rc;
}
