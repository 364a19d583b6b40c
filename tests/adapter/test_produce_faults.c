/*
 * What ordo counts as delivered, against librdkafka's mock cluster with a
 * broker error injected (issue 14, item 0; docs/decisions/0012). The
 * issue's loss needs a new partition that refuses a first batch with
 * NOT_LEADER while a later batch is accepted; a real broker does that
 * only now and then, the mock on demand: its first Produce answer is
 * NOT_LEADER_FOR_PARTITION, delayed so that the next batch is already
 * in flight. Like a partition with no producer state, the mock checks no
 * sequence numbers for a producer without a transactional id, so the
 * later batch is written, and librdkafka 2.0.2 then "implicitly acks"
 * the refused message: no error, no offset, and not in the log.
 *
 * And the order of a file's lines across topics: `ordo produce` (the
 * binary, ORDO_BINARY) sends a line after BindReferrers only once they
 * are acknowledged (decision 0025), shown with the referral topic's
 * leader answering late.
 */
#include <criterion/criterion.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "kafka.h"

#define API_PRODUCE 0

typedef struct {
        int n, ours, without_offset;
        int64_t offsets[8];
} reports_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m,
                        void *opaque) {
        reports_t *r = opaque;
        (void)rk;
        if (!m->err && m->offset < 0)
                r->without_offset++;
        if (!ordo_kafka_delivery_err(m) && r->ours < 8)
                r->offsets[r->ours++] = m->offset;
        r->n++;
}

static void produce(rd_kafka_t *rk, const char *value) {
        cr_assert_eq(rd_kafka_producev(
                         rk, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_PARTITION(0),
                         RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                         RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                         RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

Test(produce_faults, refused_batch_is_not_counted_delivered) {
        char errstr[512];
        rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(),
                                       errstr, sizeof(errstr));
        rd_kafka_mock_cluster_t *mc;
        ordo_config_t *conf = ordo_config_new();
        reports_t r;
        rd_kafka_t *rk;
        int64_t lo, hi;
        int i;

        cr_assert(mrk, "%s", errstr);
        mc = rd_kafka_mock_cluster_new(mrk, 1);
        cr_assert_eq(rd_kafka_mock_topic_create(mc, "t", 1, 1), 0);
        cr_assert_eq(ordo_config_set(conf, "kafka.bootstrap.servers",
                                     rd_kafka_mock_cluster_bootstraps(mc),
                                     errstr, sizeof(errstr)),
                     ORDO_ERR_OK);
        /* each message its own request, so two can be in flight */
        cr_assert_eq(ordo_config_set(conf, "kafka.linger.ms", "0", errstr,
                                     sizeof(errstr)),
                     ORDO_ERR_OK);
        memset(&r, 0, sizeof(r));
        rk = ordo_kafka_producer_new(conf, NULL, on_delivery, &r, errstr,
                                     sizeof(errstr));
        cr_assert(rk, "%s", errstr);

        produce(rk, "warm-up"); /* producer id and metadata */
        cr_assert_eq(rd_kafka_flush(rk, 10000), 0);
        rd_kafka_mock_broker_push_request_error_rtts(
            mc, 1, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            300);
        produce(rk, "refused");
        rd_kafka_poll(rk, 50); /* its request is out; the answer waits */
        produce(rk, "accepted");
        cr_assert_eq(rd_kafka_flush(rk, 10000), 0);
        cr_assert_eq(
            rd_kafka_query_watermark_offsets(rk, "t", 0, &lo, &hi, 5000),
            RD_KAFKA_RESP_ERR_NO_ERROR);

        cr_assert_eq(r.n, 3, "a report for every message");
        /* The rule: what ordo counts as delivered is in the log, each at
         * its own offset below the high watermark. */
        cr_assert_leq(r.ours, hi - lo, "%d counted delivered, %lld in log",
                      r.ours, (long long)(hi - lo));
        for (i = 0; i < r.ours; i++) {
                cr_assert_geq(r.offsets[i], lo);
                cr_assert_lt(r.offsets[i], hi);
                if (i)
                        cr_assert_neq(r.offsets[i], r.offsets[i - 1]);
        }
        /* What librdkafka 2.0.2 does here (a newer one may retry
         * instead): the refused message is reported without an error and
         * without an offset, and the log has the other two only. */
        if (r.without_offset)
                cr_assert_eq(hi - lo, 2, "the implicitly acked one is lost");
        cr_log_info("log %lld, reported without offset %d, delivered %d",
                    (long long)(hi - lo), r.without_offset, r.ours);

        rd_kafka_destroy(rk);
        ordo_config_destroy(conf);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mrk);
}

/* ordo's topics under prefix on the mock, one partition each, led by
 * broker 1 but the referral commands' (by referral_leader). */
static void mock_topics(rd_kafka_mock_cluster_t *mc, const char *prefix,
                        int referral_leader) {
        char topic[128];
        int t;
        for (t = 0; t < ORDO_TOPIC__COUNT; t++) {
                snprintf(topic, sizeof(topic), "%s%s", prefix,
                         ordo_topic_short((ordo_topic_t)t));
                cr_assert_eq(rd_kafka_mock_topic_create(mc, topic, 1, 1), 0);
                rd_kafka_mock_partition_set_leader(
                    mc, topic, 0,
                    t == ORDO_TOPIC_REFERRAL_COMMANDS ? referral_leader : 1);
        }
}

/* The CreateTime of the first message of topic's partition 0. */
static int64_t first_created(rd_kafka_t *consumer, const char *topic) {
        rd_kafka_topic_partition_list_t *a =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_message_t *m;
        int64_t ts = -1, deadline;
        rd_kafka_topic_partition_list_add(a, topic, 0)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
        cr_assert_eq(rd_kafka_assign(consumer, a), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_topic_partition_list_destroy(a);
        /* a deadline, not a count of polls: each of broker 2's answers
         * takes 600 ms, and an early error event ate the count */
        for (deadline = ordo_monotonic_ms() + 30000;
             ts < 0 && ordo_monotonic_ms() < deadline;) {
                if (!(m = rd_kafka_consumer_poll(consumer, 100)))
                        continue;
                if (!m->err)
                        ts = rd_kafka_message_timestamp(m, NULL);
                rd_kafka_message_destroy(m);
        }
        cr_assert_geq(ts, 0, "a message in %s", topic);
        return ts;
}

/* A binding counts for a payment when its command is written first;
 * lines to two topics race to the broker. With the referral topic's
 * leader answering 600 ms late, the payment after a binding must be
 * sent only once the binding is acknowledged: its record is made 600 ms
 * or more after the binding's (it was made at once, and could be
 * written first). */
Test(produce_faults, a_line_after_bindings_waits_for_them) {
        static const char *lines =
            "{\"type\":\"BindReferrer\",\"command_id\":\"b1\","
            "\"ts_ms\":1800000000001,\"user_id\":\"u1\","
            "\"referrer_id\":\"r1\"}\n"
            "{\"type\":\"ConfirmPayment\",\"command_id\":\"p1\","
            "\"ts_ms\":1800000000002,\"order_id\":\"o1\","
            "\"payment_id\":\"pay1\",\"amount_cents\":100}\n";
        char errstr[512], path[] = "/tmp/ordo-produce-order-XXXXXX", cmd[1024];
        rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(),
                                       errstr, sizeof(errstr));
        rd_kafka_conf_t *cc = rd_kafka_conf_new();
        const char *ordo = getenv("ORDO_BINARY");
        rd_kafka_mock_cluster_t *mc;
        rd_kafka_t *consumer;
        int64_t bound, paid;
        FILE *f;
        int fd;

        cr_assert(ordo, "ORDO_BINARY names the ordo binary");
        cr_assert(mrk, "%s", errstr);
        mc = rd_kafka_mock_cluster_new(mrk, 2);
        mock_topics(mc, "po.", 2);
        rd_kafka_mock_broker_set_rtt(mc, 2, 600);
        cr_assert_geq(fd = mkstemp(path), 0);
        cr_assert(f = fdopen(fd, "w"));
        fputs(lines, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd),
                 "'%s' -X kafka.bootstrap.servers=%s -X topic.prefix=po. "
                 "--log-level error produce --keep-ts %s",
                 ordo, rd_kafka_mock_cluster_bootstraps(mc), path);
        cr_assert_eq(system(cmd), 0, "%s", cmd);
        unlink(path);

        cr_assert_eq(rd_kafka_conf_set(cc, "bootstrap.servers",
                                       rd_kafka_mock_cluster_bootstraps(mc),
                                       errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
        cr_assert_eq(
            rd_kafka_conf_set(cc, "group.id", "check", errstr, sizeof(errstr)),
            RD_KAFKA_CONF_OK);
        cr_assert(consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr,
                                          sizeof(errstr)),
                  "%s", errstr);
        bound = first_created(consumer, "po.referral-commands");
        paid = first_created(consumer, "po.order-commands");
        cr_assert_geq(paid - bound, 600,
                      "the payment made %lld ms after the binding",
                      (long long)(paid - bound));

        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mrk);
}

/* A command whose Produce request got no answer within
 * message.timeout.ms may be in the log: `ordo produce` says so for the
 * line and in its summary (an adapter audit: 1,153 "not delivered" lines
 * of 100,000 were in the log, and nothing said they could be). The mock
 * answers every Produce 8 s late, the message times out after 4 s:
 * time enough for it to be sent first, under ASan on a loaded box too
 * (with 1 s it once timed out still queued, and rightly got no note). */
Test(produce_faults, a_timed_out_line_may_be_in_the_log) {
        static const char *line =
            "{\"type\":\"ConfirmReceipt\",\"order_id\":\"o1\"}\n";
        char errstr[512], path[] = "/tmp/ordo-produce-late-XXXXXX",
                          err_path[] = "/tmp/ordo-produce-late-err-XXXXXX",
                          cmd[1024], text[4096];
        rd_kafka_t *mrk = rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(),
                                       errstr, sizeof(errstr));
        const char *ordo = getenv("ORDO_BINARY");
        rd_kafka_mock_cluster_t *mc;
        size_t n;
        FILE *f;
        int fd, rc;

        cr_assert(ordo, "ORDO_BINARY names the ordo binary");
        cr_assert(mrk, "%s", errstr);
        mc = rd_kafka_mock_cluster_new(mrk, 1);
        mock_topics(mc, "pl.", 1);
        rd_kafka_mock_broker_push_request_error_rtts(
            mc, 1, API_PRODUCE, 3, RD_KAFKA_RESP_ERR_NO_ERROR, 8000,
            RD_KAFKA_RESP_ERR_NO_ERROR, 8000, RD_KAFKA_RESP_ERR_NO_ERROR, 8000);
        cr_assert_geq(fd = mkstemp(path), 0);
        cr_assert(f = fdopen(fd, "w"));
        fputs(line, f);
        fclose(f);
        cr_assert_geq(fd = mkstemp(err_path), 0);
        close(fd);
        snprintf(cmd, sizeof(cmd),
                 "'%s' -X kafka.bootstrap.servers=%s -X topic.prefix=pl. "
                 "-X kafka.message.timeout.ms=4000 --log-level error "
                 "produce %s 2>%s",
                 ordo, rd_kafka_mock_cluster_bootstraps(mc), path, err_path);
        rc = system(cmd);
        cr_assert(f = fopen(err_path, "r"));
        n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
        unlink(path);
        unlink(err_path);
        cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "%s: %d\n%s", cmd, rc,
                  text);
        cr_assert(strstr(text, "line 1: not delivered: Local: Message timed "
                               "out (sent but not confirmed: it may be in "
                               "the log)"),
                  "%s", text);
        cr_assert(strstr(text, "1 not delivered") &&
                      strstr(text, "(1 sent but not confirmed: they may be "
                                   "in the log)"),
                  "%s", text);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mrk);
}
