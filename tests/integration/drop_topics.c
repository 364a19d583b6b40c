/*
 * Test helper: see drop_topics.h.
 */
#include "drop_topics.h"

#include <librdkafka/rdkafka.h>
#include <string.h>

#include "kafka.h"

void ordo_test_drop_topics(const ordo_config_t *c) {
        char err[256], names[ORDO_TOPIC__COUNT][256];
        rd_kafka_DeleteTopic_t *dt[ORDO_TOPIC__COUNT];
        rd_kafka_queue_t *q;
        rd_kafka_event_t *ev;
        rd_kafka_t *rk;
        int i;

        if (!c ||
            !strcmp(ordo_config_get(c, "kafka.bootstrap.servers"),
                    "127.0.0.1:1") ||
            !(rk = ordo_kafka_producer_new(c, NULL, NULL, NULL, err,
                                           sizeof(err))))
                return;
        q = rd_kafka_queue_new(rk);
        for (i = 0; i < ORDO_TOPIC__COUNT; i++) {
                ordo_topic_name(c, (ordo_topic_t)i, names[i], sizeof(names[i]));
                dt[i] = rd_kafka_DeleteTopic_new(names[i]);
        }
        rd_kafka_DeleteTopics(rk, dt, ORDO_TOPIC__COUNT, NULL, q);
        if ((ev = rd_kafka_queue_poll(q, 10000)))
                rd_kafka_event_destroy(ev);
        rd_kafka_DeleteTopic_destroy_array(dt, ORDO_TOPIC__COUNT);
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy(rk);
}
