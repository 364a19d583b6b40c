/*
 * The shared Kafka helpers (runtime/kafka_io.h, docs/decisions/0020)
 * against librdkafka's mock cluster: reading a partition reads exactly
 * [from, end) and no further, also on a reused handle; a batch is at most
 * max messages, waits only for the first, returns the end of a
 * partition in its place when asked and stops on a fatal consumer error;
 * produce waits for room in a full queue, or refuses at once with wait
 * 0. The stable end's
 * wait for an open transaction needs a real broker (the mock has no last
 * stable offset of its own): tests/integration/test_kafka_io.c.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "kafka_io.h"
#include "log.h"

#define N 10

static rd_kafka_t *mrk;
static rd_kafka_mock_cluster_t *mc;
static ordo_config_t *conf;

static void set(const char *k, const char *v) {
        char errstr[256];
        cr_assert_eq(ordo_config_set(conf, k, v, errstr, sizeof(errstr)),
                     ORDO_ERR_OK, "%s", errstr);
}

/* n messages "m0".. to topic/partition. */
static void produce_to(const char *topic, int32_t partition, int n) {
        char errstr[256], v[16];
        rd_kafka_t *p = ordo_kafka_producer_new(conf, NULL, NULL, NULL, errstr,
                                                sizeof(errstr));
        int i;
        cr_assert(p, "%s", errstr);
        for (i = 0; i < n; i++) {
                ordo_kafka_out_t m = { topic, partition, NULL, 0,
                                       v,     0,         NULL, NULL };
                m.len = (size_t)snprintf(v, sizeof(v), "m%d", i);
                cr_assert_eq(ordo_kafka_produce(p, &m, RD_KAFKA_MSG_F_COPY,
                                                ORDO_PRODUCE_WAIT),
                             0);
        }
        cr_assert_eq(rd_kafka_flush(p, 10000), 0);
        rd_kafka_destroy(p);
}

/* A mock cluster with topic "t" (one partition) holding N messages
 * "m0".."m9". */
static void setup(void) {
        char errstr[256];

        ordo_log_set_level(ORDO_LOG_ERROR);
        mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), errstr,
                           sizeof(errstr));
        cr_assert(mrk, "%s", errstr);
        mc = rd_kafka_mock_cluster_new(mrk, 1);
        cr_assert_eq(rd_kafka_mock_topic_create(mc, "t", 1, 1), 0);
        conf = ordo_config_new();
        set("kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc));
        produce_to("t", 0, N);
}

static void teardown(void) {
        ordo_config_destroy(conf);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mrk);
}

TestSuite(kafka_io, .init = setup, .fini = teardown, .timeout = 60);

static rd_kafka_t *consumer(void) {
        char errstr[256];
        rd_kafka_t *rk = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                                 sizeof(errstr));
        cr_assert(rk, "%s", errstr);
        return rk;
}

typedef struct {
        int64_t offsets[2 * N];
        int n;
} seen_t;

static void see(const rd_kafka_message_t *m, void *arg) {
        seen_t *s = arg;
        cr_assert_lt(s->n, 2 * N);
        s->offsets[s->n++] = m->offset;
}

static void assert_offsets(const seen_t *s, int64_t from, int64_t end) {
        int i;
        cr_assert_eq(s->n, end - from, "read %d, want %lld", s->n,
                     (long long)(end - from));
        for (i = 0; i < s->n; i++)
                cr_assert_eq(s->offsets[i], from + i);
}

/* A restore reads its event partition [snapshot, stable end) and no
 * further: an event past the end would be folded twice (0004, 0005). */
Test(kafka_io, read_range_reads_exactly_from_to_end_on_a_reused_handle) {
        rd_kafka_t *rk = consumer();
        seen_t s;

        memset(&s, 0, sizeof(s));
        cr_assert_eq(
            ordo_kafka_read_range(rk, "t", 0, 3, 8, "test", NULL, see, &s), 0);
        assert_offsets(&s, 3, 8);
        /* the same handle again, from before where it stopped */
        memset(&s, 0, sizeof(s));
        cr_assert_eq(
            ordo_kafka_read_range(rk, "t", 0, 0, 5, "test", NULL, see, &s), 0);
        assert_offsets(&s, 0, 5);
        /* to the very end: done on the last message, not after a wait */
        memset(&s, 0, sizeof(s));
        cr_assert_eq(
            ordo_kafka_read_range(rk, "t", 0, 6, N, "test", NULL, see, &s), 0);
        assert_offsets(&s, 6, N);
        /* an empty range reads nothing */
        memset(&s, 0, sizeof(s));
        cr_assert_eq(
            ordo_kafka_read_range(rk, "t", 0, 4, 4, "test", NULL, see, &s), 0);
        cr_assert_eq(s.n, 0);
        rd_kafka_destroy(rk);
}

Test(kafka_io, read_range_stops_when_asked) {
        rd_kafka_t *rk = consumer();
        volatile sig_atomic_t stop = 1;
        seen_t s;

        memset(&s, 0, sizeof(s));
        /* an end beyond the log would never be reached */
        cr_assert_eq(
            ordo_kafka_read_range(rk, "t", 0, 0, N + 5, "test", &stop, see, &s),
            ORDO_ERR_INTERRUPTED);
        rd_kafka_destroy(rk);
}

/* The commission join follows a topic: the end moves on before each
 * batch, and what was read stays read. */
Test(kafka_io, a_followed_reader_resumes_where_it_stopped) {
        rd_kafka_t *rk = consumer();
        ordo_kafka_reader_t r;
        rd_kafka_message_t *m;
        int64_t want = 0;

        ordo_kafka_reader_open(&r, rk, "t", 0, RD_KAFKA_OFFSET_BEGINNING,
                               INT64_MAX, "test");
        ordo_kafka_reader_extend(&r, 4);
        while (!r.done)
                if ((m = ordo_kafka_reader_next(&r, 1000))) {
                        cr_assert_eq(m->offset, want++);
                        rd_kafka_message_destroy(m);
                }
        cr_assert_eq(want, 4);
        cr_assert_null(ordo_kafka_reader_next(&r, 100), "past the end");
        ordo_kafka_reader_park(&r); /* what it prefetched is fetched again */
        ordo_kafka_reader_extend(&r, N);
        while (!r.done)
                if ((m = ordo_kafka_reader_next(&r, 1000))) {
                        cr_assert_eq(m->offset, want++);
                        rd_kafka_message_destroy(m);
                }
        cr_assert_eq(want, N);
        ordo_kafka_reader_close(&r);
        rd_kafka_destroy(rk);
}

/* replay, reconcile and the commission join read up to a stable end,
 * whose messages are there: a reader that gets nothing for its idle
 * limit reports a stall (not the end), and reads on once the broker is
 * back; a stop ends the wait at once and is neither. */
Test(kafka_io, an_idle_reader_stalls_and_reads_on_when_the_broker_is_back) {
        rd_kafka_t *rk = consumer();
        volatile sig_atomic_t stop = 0;
        ordo_kafka_reader_t r;
        rd_kafka_message_t *m;
        int64_t want = 0;

        cr_assert_eq(rd_kafka_mock_broker_set_down(mc, 1), 0);
        ordo_kafka_reader_open(&r, rk, "t", 0, 0, N, "test");
        cr_assert_null(ordo_kafka_reader_await(&r, 500, &stop));
        cr_assert(r.stalled, "nothing came: a stall");
        cr_assert_not(r.done);

        cr_assert_eq(rd_kafka_mock_broker_set_up(mc, 1), 0);
        while ((m = ordo_kafka_reader_await(&r, 30000, &stop))) {
                cr_assert_eq(m->offset, want++);
                rd_kafka_message_destroy(m);
        }
        cr_assert_eq(want, N);
        cr_assert(r.done);
        cr_assert_not(r.stalled, "a read that moved is not a stall");

        ordo_kafka_reader_extend(&r, N + 5); /* beyond the log */
        stop = 1;
        cr_assert_null(ordo_kafka_reader_await(&r, 30000, &stop));
        cr_assert_not(r.stalled, "stopped, not stalled");
        cr_assert_not(r.done);
        ordo_kafka_reader_close(&r);
        rd_kafka_destroy(rk);
}

static void assign(rd_kafka_t *rk) {
        rd_kafka_topic_partition_list_t *tp =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, "t", 0)->offset = 0;
        rd_kafka_assign(rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
}

/* Batches of at most max, in offset order; with eofs, the partition's
 * end comes after every message before it (rebuild ends a partition
 * there: ahead of them it would drop them). Returns the ends seen. */
static int read_batches(rd_kafka_t *rk, int eofs) {
        rd_kafka_message_t *msgs[4];
        const ordo_kafka_batch_opts_t o = { "test", eofs };
        char errstr[256];
        int64_t next = 0;
        size_t n, i;
        int fatal, ends = 0, rounds = 0;

        while (next < N || (eofs && !ends)) {
                cr_assert_lt(rounds++, 40, "read %lld of %d", (long long)next,
                             N);
                n = ordo_kafka_consume_batch(rk, &o, msgs, 4, 2000, &fatal,
                                             errstr, sizeof(errstr));
                cr_assert_eq(fatal, 0);
                cr_assert_leq(n, 4);
                for (i = 0; i < n; i++) {
                        if (msgs[i]->err) {
                                cr_assert_eq(msgs[i]->err,
                                             RD_KAFKA_RESP_ERR__PARTITION_EOF);
                                cr_assert_eq(msgs[i]->offset, N);
                                cr_assert_eq(next, N, "an end before %lld",
                                             (long long)next);
                                ends++;
                        } else
                                cr_assert_eq(msgs[i]->offset, next++);
                        rd_kafka_message_destroy(msgs[i]);
                }
        }
        return ends;
}

/* Once everything was read: a batch waits wait_ms and returns nothing
 * (no end either, without eofs or once it was returned). */
static void nothing_left(rd_kafka_t *rk, int eofs) {
        rd_kafka_message_t *msgs[4];
        const ordo_kafka_batch_opts_t o = { "test", eofs };
        char errstr[256];
        int64_t t0 = ordo_monotonic_ms();
        int fatal;

        cr_assert_eq(ordo_kafka_consume_batch(rk, &o, msgs, 4, 300, &fatal,
                                              errstr, sizeof(errstr)),
                     0);
        cr_assert_geq(ordo_monotonic_ms() - t0, 250);
}

Test(kafka_io, a_batch_is_at_most_max_and_has_the_end_only_if_asked) {
        int eofs;
        for (eofs = 0; eofs <= 1; eofs++) {
                rd_kafka_t *rk = consumer();
                assign(rk);
                cr_assert_eq(read_batches(rk, eofs), eofs);
                nothing_left(rk, eofs);
                rd_kafka_destroy(rk);
        }
}

/* A fatal consumer error (a newer member with our group.instance.id)
 * ends the batch and is reported: the projection loop used to drop it
 * and poll a consumer that could no longer deliver anything. */
Test(kafka_io, a_fatal_consumer_error_ends_the_batch_and_is_reported) {
        char errstr[256];
        rd_kafka_t *rk = ordo_kafka_consumer_new(conf, "g", NULL, NULL, errstr,
                                                 sizeof(errstr));
        rd_kafka_message_t *msgs[4];
        const ordo_kafka_batch_opts_t o = { "test", 0 };
        int64_t t0;
        int fatal = 0;

        cr_assert(rk, "%s", errstr);
        cr_assert_eq(rd_kafka_test_fatal_error(
                         rk, RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID, "test"),
                     0);
        t0 = ordo_monotonic_ms();
        errstr[0] = '\0';
        cr_assert_eq(ordo_kafka_consume_batch(rk, &o, msgs, 4, 5000, &fatal,
                                              errstr, sizeof(errstr)),
                     0);
        cr_assert_eq(fatal, 1);
        cr_assert(strstr(errstr, "test"), "errstr: %s", errstr);
        cr_assert_lt(ordo_monotonic_ms() - t0, 4000, "ended at once");
        /* a fenced member has no group to leave */
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

typedef struct {
        int delivered, failed;
} reports_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
        reports_t *r = opaque;
        (void)rk;
        if (ordo_kafka_delivery_err(m))
                r->failed++;
        else
                r->delivered++;
}

/* Back-pressure: with room for one message in librdkafka's queue, the
 * second is refused at once with wait 0 (the gateway's 503) and waited
 * for otherwise, so every message of a run is sent. */
Test(kafka_io, produce_waits_for_room_or_refuses_at_once) {
        char errstr[256];
        reports_t r = { 0, 0 };
        rd_kafka_t *p;
        int i;

        set("kafka.queue.buffering.max.messages", "1");
        set("kafka.linger.ms", "50");
        p = ordo_kafka_producer_new(conf, NULL, on_delivery, &r, errstr,
                                    sizeof(errstr));
        cr_assert(p, "%s", errstr);
        for (i = 0; i < 20; i++) {
                ordo_kafka_out_t m = { "t", 0, "k", 1, "v", 1, NULL, NULL };
                m.hdrs = rd_kafka_headers_new(1);
                rd_kafka_header_add(m.hdrs, "h", -1, "x", -1);
                cr_assert_eq(ordo_kafka_produce(p, &m, RD_KAFKA_MSG_F_COPY,
                                                ORDO_PRODUCE_WAIT),
                             RD_KAFKA_RESP_ERR_NO_ERROR, "message %d", i);
                if (i == 10) {
                        /* the queue holds message 10 (linger): no room */
                        ordo_kafka_out_t full = m;
                        full.hdrs = rd_kafka_headers_new(1);
                        cr_assert_eq(ordo_kafka_produce(p, &full,
                                                        RD_KAFKA_MSG_F_COPY, 0),
                                     RD_KAFKA_RESP_ERR__QUEUE_FULL);
                        /* its headers were taken over and destroyed
                         * (ASan would see a leak) */
                }
        }
        cr_assert_eq(rd_kafka_flush(p, 10000), 0);
        cr_assert_eq(r.delivered, 20);
        cr_assert_eq(r.failed, 0);
        rd_kafka_destroy(p);
}

/* The header name's value as a string ("" absent). */
static const char *header_of(rd_kafka_headers_t *h, const char *name, char *buf,
                             size_t size) {
        const void *v;
        size_t len;
        buf[0] = '\0';
        if (!rd_kafka_header_get_last(h, name, &v, &len) && v)
                snprintf(buf, size, "%.*s", (int)len, (const char *)v);
        return buf;
}

/* A foreign writer's message with a key of key_len bytes, a type header
 * of type_len and a value of len, onto "big", read back by *rkp (to be
 * destroyed after the message). */
static rd_kafka_message_t *foreign(size_t key_len, size_t type_len, size_t len,
                                   rd_kafka_t **rkp) {
        static char bytes[2000000];
        char errstr[256];
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_t *p, *rk;
        rd_kafka_topic_partition_list_t *tp;
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_message_t *m = NULL;
        int64_t deadline = ordo_monotonic_ms() + 20000;

        memset(bytes, 'x', sizeof(bytes));
        rd_kafka_conf_set(pc, "bootstrap.servers",
                          rd_kafka_mock_cluster_bootstraps(mc), errstr,
                          sizeof(errstr));
        /* a foreign client allows more than librdkafka's default */
        rd_kafka_conf_set(pc, "message.max.bytes", "2000000", errstr,
                          sizeof(errstr));
        p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
        cr_assert(p, "%s", errstr);
        rd_kafka_header_add(h, ORDO_TYPE_HEADER, -1, bytes, (ssize_t)type_len);
        cr_assert_eq(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("big"),
                                       RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_KEY(bytes, key_len),
                                       RD_KAFKA_V_VALUE(bytes, len),
                                       RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
                     0);
        cr_assert_eq(rd_kafka_flush(p, 10000), 0);
        rd_kafka_destroy(p);

        rk = consumer();
        tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, "big", 0)->offset =
            RD_KAFKA_OFFSET_TAIL(1);
        rd_kafka_assign(rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        while (!m && ordo_monotonic_ms() < deadline) {
                m = rd_kafka_consumer_poll(rk, 500);
                if (m && m->err) {
                        rd_kafka_message_destroy(m);
                        m = NULL;
                }
        }
        cr_assert(m, "the foreign message was not read back");
        *rkp = rk;
        return m;
}

/* The letter for m, produced with librdkafka's default
 * message.max.bytes: delivered, or the error. */
static rd_kafka_resp_err_t send_letter(rd_kafka_message_t *m,
                                       ordo_kafka_out_t *out) {
        char errstr[256];
        reports_t r = { 0, 0 };
        rd_kafka_t *p = ordo_kafka_producer_new(conf, NULL, on_delivery, &r,
                                                errstr, sizeof(errstr));
        rd_kafka_headers_t *kept;
        rd_kafka_resp_err_t err;
        cr_assert(p, "%s", errstr);
        ordo_dead_letter(m, "undecodable", "not Avro", NULL, out);
        out->topic = "dl";
        out->partition = 0;
        kept = out->hdrs; /* the produce takes a copy: these to look at */
        out->hdrs = rd_kafka_headers_copy(kept);
        err = ordo_kafka_produce(p, out, RD_KAFKA_MSG_F_COPY, 0);
        out->hdrs = kept;
        if (!err) {
                cr_assert_eq(rd_kafka_flush(p, 10000), 0);
                cr_assert_eq(r.delivered, 1);
        }
        rd_kafka_destroy(p);
        return err;
}

/* A dead letter must never be refused for its size: it would block the
 * partition it came from (a review found a 150 KB key with a large value
 * refused, for ever). What is over its budget goes without its bytes,
 * which stay at their source, and the letter says how long they were. */
Test(kafka_io, a_dead_letter_is_never_too_large_to_send) {
        char buf[64], type[512];
        ordo_kafka_out_t out;
        rd_kafka_message_t *m;
        rd_kafka_t *rk;

        cr_assert_eq(rd_kafka_mock_topic_create(mc, "big", 1, 1), 0);
        cr_assert_eq(rd_kafka_mock_topic_create(mc, "dl", 1, 1), 0);

        /* at every budget: all kept */
        m = foreign(ORDO_LETTER_KEY_MAX, ORDO_LETTER_TYPE_MAX,
                    ORDO_LETTER_PAYLOAD_MAX, &rk);
        cr_assert_eq(send_letter(m, &out), 0);
        cr_assert_eq(out.len, (size_t)ORDO_LETTER_PAYLOAD_MAX);
        cr_assert_eq(out.key_len, (size_t)ORDO_LETTER_KEY_MAX);
        cr_assert_eq(
            strlen(header_of(out.hdrs, ORDO_TYPE_HEADER, type, sizeof(type))),
            (size_t)ORDO_LETTER_TYPE_MAX);
        cr_assert_str_eq(header_of(out.hdrs, "ordo.source.topic", buf, 64),
                         "big");
        rd_kafka_headers_destroy(out.hdrs);
        rd_kafka_message_destroy(m);
        rd_kafka_destroy(rk);

        /* over each: none of them, their lengths said */
        m = foreign(150000, 300, 880000, &rk);
        cr_assert_eq(send_letter(m, &out), 0);
        cr_assert_null(out.key);
        cr_assert_eq(out.len, 880000);
        cr_assert_str_eq(header_of(out.hdrs, ORDO_TYPE_HEADER, buf, 64), "");
        cr_assert_str_eq(header_of(out.hdrs, "ordo.key.omitted", buf, 64),
                         "150000");
        cr_assert_str_eq(header_of(out.hdrs, "ordo.type.omitted", buf, 64),
                         "300");
        rd_kafka_headers_destroy(out.hdrs);
        rd_kafka_message_destroy(m);
        rd_kafka_destroy(rk);

        m = foreign(10, 5, ORDO_LETTER_PAYLOAD_MAX + 1, &rk);
        cr_assert_eq(send_letter(m, &out), 0);
        cr_assert_null(out.value);
        cr_assert_eq(out.len, 0);
        cr_assert_eq(out.key_len, 10);
        cr_assert_str_eq(header_of(out.hdrs, "ordo.payload.omitted", buf, 64),
                         "900001");
        rd_kafka_headers_destroy(out.hdrs);
        rd_kafka_message_destroy(m);
        rd_kafka_destroy(rk);
}
