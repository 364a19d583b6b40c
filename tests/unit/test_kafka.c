/*
 * runtime/kafka.c without a broker.
 *
 * What counts as delivered (issue 14, item 0; docs/decisions/0012): a
 * delivery report without an error and with the offset the broker wrote
 * the message at. librdkafka's idempotent producer reports a message it
 * "implicitly acked" (never in a batch the broker accepted) with no
 * error and no offset; that one is not delivered.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "kafka.h"
#include "kafka_io.h"

static rd_kafka_message_t report(rd_kafka_resp_err_t err, int64_t offset) {
        rd_kafka_message_t m;
        memset(&m, 0, sizeof(m));
        m.err = err;
        m.offset = offset;
        return m;
}

Test(delivery, written_at_an_offset) {
        rd_kafka_message_t m = report(RD_KAFKA_RESP_ERR_NO_ERROR, 0);
        cr_assert_eq(ordo_kafka_delivery_err(&m), RD_KAFKA_RESP_ERR_NO_ERROR);
        m.offset = 123456;
        cr_assert_eq(ordo_kafka_delivery_err(&m), RD_KAFKA_RESP_ERR_NO_ERROR);
}

Test(delivery, implicit_ack_without_offset_is_not_delivered) {
        rd_kafka_message_t m =
            report(RD_KAFKA_RESP_ERR_NO_ERROR, RD_KAFKA_OFFSET_INVALID);
        cr_assert_eq(ordo_kafka_delivery_err(&m),
                     RD_KAFKA_RESP_ERR__INCONSISTENT);
        m.offset = -1;
        cr_assert_neq(ordo_kafka_delivery_err(&m), RD_KAFKA_RESP_ERR_NO_ERROR);
}

Test(delivery, errors_pass_through) {
        rd_kafka_message_t m =
            report(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_OFFSET_INVALID);
        cr_assert_eq(ordo_kafka_delivery_err(&m),
                     RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
        m = report(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 7);
        cr_assert_eq(ordo_kafka_delivery_err(&m),
                     RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION);
}

Test(group, named_after_the_topic_prefix) {
        /* docs/operating.md "Several deployments on one Kafka": consumer
         * groups and transactional ids (<group.prefix><stage>...) follow
         * topic.prefix unless group.prefix is set */
        char errstr[256], group[256];
        ordo_config_t *c = ordo_config_new();
        ordo_kafka_group(c, "process.order", group, sizeof(group));
        cr_assert_str_eq(group, "ordo.process.order");
        ordo_config_set(c, "topic.prefix", "shop2.", errstr, sizeof(errstr));
        ordo_kafka_group(c, "process.order", group, sizeof(group));
        cr_assert_str_eq(group, "shop2.process.order");
        ordo_config_set(c, "group.prefix", "rebuild.", errstr, sizeof(errstr));
        ordo_kafka_group(c, "process.order", group, sizeof(group));
        cr_assert_str_eq(group, "rebuild.process.order");
        ordo_config_destroy(c);
}

/* kafka.* keys pass through to librdkafka, except those ordo sets per
 * client for its guarantees: refused, named, with the reason. */
Test(conf, guarantees_are_not_passed_through) {
        static const char *const refused[] = {
                "group.id",           "transactional.id",
                "isolation.level",    "enable.auto.commit",
                "auto.commit.enable", "enable.auto.offset.store",
                "enable.idempotence", "partitioner",
                "group.instance.id",  "partition.assignment.strategy",
                "auto.offset.reset",
        };
        char key[64], errstr[512];
        size_t i;
        for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                ordo_config_t *c = ordo_config_new();
                snprintf(key, sizeof(key), "kafka.%s", refused[i]);
                cr_assert_not(
                    ordo_config_set(c, key, "x", errstr, sizeof(errstr)));
                cr_assert_null(ordo_kafka_conf(c, errstr, sizeof(errstr)),
                               "%s passed through", key);
                cr_assert(strstr(errstr, key) && strstr(errstr, "set by ordo"),
                          "%s", errstr);
                ordo_config_destroy(c);
        }
        {
                ordo_config_t *c = ordo_config_new();
                rd_kafka_conf_t *kc;
                /* empty: static membership off (0009); a tuning key */
                ordo_config_set(c, "kafka.group.instance.id", "", errstr,
                                sizeof(errstr));
                ordo_config_set(c, "kafka.linger.ms", "7", errstr,
                                sizeof(errstr));
                kc = ordo_kafka_conf(c, errstr, sizeof(errstr));
                cr_assert_not_null(kc, "%s", errstr);
                rd_kafka_conf_destroy(kc);
                ordo_config_destroy(c);
        }
}
