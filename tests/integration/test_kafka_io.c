/*
 * Integration: the shared Kafka helpers (runtime/kafka_io.h) against the
 * real broker, where transactions have commit markers and a last stable
 * offset (the mock has neither). Kafka at ORDO_TEST_KAFKA (default
 * 127.0.0.1:9092); topics under a prefix of their own ("kio<pid>.").
 *
 * docs/decisions/0004 and 0017: a partition's end is stable once no
 * transaction is open below it; a reader stops at an end that is a
 * marker, and a follower (the commission join) loses nothing that was
 * polled past its end.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drop_topics.h"
#include "kafka_io.h"
#include "log.h"

static ordo_config_t *conf;
static rd_kafka_t *committed, *uncommitted, *txp;
static char topic[128];

static void set(const char *k, const char *v) {
        char err[256];
        cr_assert_eq(ordo_config_set(conf, k, v, err, sizeof(err)), 0, "%s",
                     err);
}

static void setup(void) {
        char prefix[64], err[512];
        const char *bootstrap = getenv("ORDO_TEST_KAFKA");
        rd_kafka_error_t *error;

        ordo_log_set_level(ORDO_LOG_ERROR);
        conf = ordo_config_new();
        snprintf(prefix, sizeof(prefix), "kio%d.", (int)getpid());
        set("topic.prefix", prefix);
        set("topic.partitions", "1");
        if (bootstrap)
                set("kafka.bootstrap.servers", bootstrap);
        cr_assert_eq(ordo_kafka_ensure_topics(conf, NULL, err, sizeof(err)), 0,
                     "%s", err);
        ordo_topic_name(conf, ORDO_TOPIC_ORDER_EVENTS, topic, sizeof(topic));
        committed =
            ordo_kafka_consumer_new(conf, NULL, NULL, NULL, err, sizeof(err));
        uncommitted = ordo_kafka_watermark_client_new(conf, err, sizeof(err));
        txp =
            ordo_kafka_producer_new(conf, prefix, NULL, NULL, err, sizeof(err));
        cr_assert(committed && uncommitted && txp, "%s", err);
        error = rd_kafka_init_transactions(txp, 30000);
        cr_assert_null(error, "%s", rd_kafka_error_string(error));
}

static void teardown(void) {
        rd_kafka_destroy(txp);
        rd_kafka_destroy(uncommitted);
        rd_kafka_destroy(committed);
        ordo_test_drop_topics(conf);
        ordo_config_destroy(conf);
}

/* n messages in one transaction, left open unless commit. */
static void transaction(int n, int commit) {
        rd_kafka_error_t *error = rd_kafka_begin_transaction(txp);
        int i;
        cr_assert_null(error, "%s", rd_kafka_error_string(error));
        for (i = 0; i < n; i++) {
                ordo_kafka_out_t m = { topic, 0, "k", 1, "v", 1, NULL, NULL };
                cr_assert_eq(ordo_kafka_produce(txp, &m, RD_KAFKA_MSG_F_COPY,
                                                ORDO_PRODUCE_WAIT),
                             0);
        }
        cr_assert_eq(rd_kafka_flush(txp, 10000), 0);
        if (commit) {
                error = rd_kafka_commit_transaction(txp, 10000);
                cr_assert_null(error, "%s", rd_kafka_error_string(error));
        }
}

static ordo_err_t stable_end(int own, int64_t wait_ms,
                             volatile sig_atomic_t *stop, int64_t *end) {
        const ordo_stable_end_opts_t o = { "test", own, wait_ms, stop };
        char err[512];
        int64_t lo;
        return ordo_kafka_stable_end(committed, uncommitted, topic, 0, &o, &lo,
                                     end, err, sizeof(err));
}

/* Reads r to its end, the offsets into got[*n..8). */
static void read_to_end(ordo_kafka_reader_t *r, int64_t got[8], int *n) {
        rd_kafka_message_t *m;
        while (!r->done && *n < 8)
                if ((m = ordo_kafka_reader_next(r, 5000))) {
                        got[(*n)++] = m->offset;
                        rd_kafka_message_destroy(m);
                }
}

TestSuite(kafka_io, .init = setup, .fini = teardown, .timeout = 120);

Test(kafka_io, the_stable_end_waits_for_an_open_transaction) {
        volatile sig_atomic_t stop = 1;
        int64_t end = -1;

        transaction(3, 0); /* offsets 0-2, open */
        cr_assert_eq(stable_end(1, 1500, NULL, &end), ORDO_ERR_TIMEOUT);
        cr_assert_eq(stable_end(0, 1500, NULL, &end), ORDO_ERR_TIMEOUT);
        cr_assert_eq(stable_end(0, 60000, &stop, &end), ORDO_ERR_INTERRUPTED);
        cr_assert_null(rd_kafka_commit_transaction(txp, 10000));
        /* "The end as it was when asked": the commit has returned, but
         * its marker may not be written yet, so the end is past the three
         * messages, with or without the marker. */
        cr_assert_eq(stable_end(0, 30000, NULL, &end), ORDO_ERR_OK);
        cr_assert(end == 3 || end == 4, "end %lld", (long long)end);
        /* An owner's end waits for the marker: messages and marker. */
        cr_assert_eq(stable_end(1, 30000, NULL, &end), ORDO_ERR_OK);
        cr_assert_eq(end, 4);
}

static void count(const rd_kafka_message_t *m, void *arg) {
        int64_t *seen = arg;
        cr_assert_eq(m->offset, seen[0], "offset %lld, want %lld",
                     (long long)m->offset, (long long)seen[0]);
        seen[0]++;
        seen[1]++;
}

/* The last offset below the end is a marker, never delivered: the read
 * still ends (on the partition's end event), with every message. */
Test(kafka_io, a_read_to_an_end_behind_a_marker_ends_with_every_message) {
        int64_t end, seen[2] = { 0, 0 };

        transaction(3, 1);
        cr_assert_eq(stable_end(1, 30000, NULL, &end), ORDO_ERR_OK);
        cr_assert_eq(end, 4);
        cr_assert_eq(ordo_kafka_read_range(committed, topic, 0, 0, end, "test",
                                           NULL, count, seen),
                     0);
        cr_assert_eq(seen[1], 3);
}

/* The commission join: its end is the stable offset when a batch comes;
 * a message committed since, polled before the end's event, is kept for
 * the next batch rather than lost. Parked at its end in between (no
 * assignment, no fetches while the join is idle), a follower stays
 * parked for an end it has reached, and reads on from where it left off
 * once extended: what it had polled past its end is fetched again,
 * neither lost nor read twice. */
static void follow_past_the_end(int park) {
        rd_kafka_topic_partition_list_t *a;
        ordo_kafka_reader_t r;
        int64_t end, got[8];
        int n = 0;

        transaction(3, 1); /* 0-2, marker 3 */
        cr_assert_eq(stable_end(1, 30000, NULL, &end), ORDO_ERR_OK);
        transaction(2, 1); /* 4-5, marker 6: past the end */
        ordo_kafka_reader_open(&r, committed, topic, 0,
                               RD_KAFKA_OFFSET_BEGINNING, INT64_MAX, "test");
        ordo_kafka_reader_extend(&r, end);
        read_to_end(&r, got, &n);
        cr_assert_eq(n, 3);
        cr_assert_eq(got[2], 2);
        if (park) {
                ordo_kafka_reader_park(&r);
                ordo_kafka_reader_extend(&r, end);
                cr_assert(r.done && r.parked, "an end reached keeps it parked");
                cr_assert_eq(rd_kafka_assignment(committed, &a), 0);
                cr_assert_eq(a->cnt, 0, "parked: nothing assigned");
                rd_kafka_topic_partition_list_destroy(a);
        }
        ordo_kafka_reader_extend(&r, 7);
        cr_assert(!r.parked);
        read_to_end(&r, got, &n);
        cr_assert_eq(n, 5, "read %d", n);
        cr_assert_eq(got[3], 4);
        cr_assert_eq(got[4], 5);
        cr_assert_null(ordo_kafka_reader_next(&r, 300), "past the end");
        ordo_kafka_reader_close(&r);
}

Test(kafka_io, a_follower_keeps_what_it_polled_past_its_end) {
        follow_past_the_end(0);
}

Test(kafka_io, a_parked_follower_reads_on_where_it_left_off) {
        follow_past_the_end(1);
}

/* The commission join while idle (stream_join.c, ordo__join_idle): a
 * follower with no end yet takes what was fetched without waiting; once
 * the last thing polled is the partition's end (past a marker), it can
 * take that as its end and park, and reads on from there when a later
 * transaction moves the end on. */
Test(kafka_io, an_idle_follower_meets_the_end_and_parks_there) {
        ordo_kafka_reader_t r;
        rd_kafka_message_t *m;
        int64_t end, got[8];
        int n = 0, turns = 0;

        transaction(3, 1); /* 0-2, marker 3 */
        ordo_kafka_reader_open(&r, committed, topic, 0,
                               RD_KAFKA_OFFSET_BEGINNING, INT64_MAX, "test");
        while (!r.at_end && turns++ < 500) {
                while ((m = ordo_kafka_reader_next(&r, 0))) {
                        cr_assert_lt(n, 8);
                        got[n++] = m->offset;
                        rd_kafka_message_destroy(m);
                }
                usleep(10000);
        }
        cr_assert(r.at_end, "the end met within 5 s");
        cr_assert_eq(n, 3);
        cr_assert_eq(r.next, 4, "the end is past the marker");
        ordo_kafka_reader_park(&r);
        cr_assert(r.parked);
        transaction(2, 1); /* 4-5, marker 6 */
        cr_assert_eq(stable_end(1, 30000, NULL, &end), ORDO_ERR_OK);
        ordo_kafka_reader_extend(&r, end);
        cr_assert(!r.parked && !r.at_end);
        read_to_end(&r, got, &n);
        cr_assert_eq(n, 5, "read %d", n);
        cr_assert_eq(got[3], 4);
        cr_assert_eq(got[4], 5);
        ordo_kafka_reader_close(&r);
}
