#include "send.h"

#include <stdio.h>
#include <string.h>

#include "kafka.h"
#include "kafka_io.h"

int ordo_send(rd_kafka_t *rk, ordo_codec_t *codec, const char *topic,
              int32_t partition, const ordo_msg_t *m, void *opaque,
              char *errstr, size_t errstr_size) {
        char buf[8192];
        size_t len;
        const char *key = ordo_msg_key(m);
        rd_kafka_headers_t *hdrs;
        ordo_kafka_out_t out = {
                topic, partition, NULL, 0, buf, 0, NULL, opaque
        };
        rd_kafka_resp_err_t err;

        if (ordo_codec_encode(codec, m, buf, sizeof(buf), &len, errstr,
                              errstr_size))
                return -1;
        hdrs = rd_kafka_headers_new(1);
        rd_kafka_header_add(hdrs, ORDO_TYPE_HEADER, -1,
                            ordo_msg_type_name(m->type), -1);
        out.key = *key ? key : NULL;
        out.key_len = strlen(key);
        out.len = len;
        out.hdrs = hdrs;
        err = ordo_kafka_produce(rk, &out, RD_KAFKA_MSG_F_COPY,
                                 ORDO_PRODUCE_WAIT);
        if (err) {
                snprintf(errstr, errstr_size, "produce: %s",
                         rd_kafka_err2str(err));
                return -1;
        }
        rd_kafka_poll(rk, 0);
        return 0;
}

int ordo_send_tick(rd_kafka_t *rk, ordo_codec_t *codec, const char *topic,
                   const ordo_msg_t *tick, void *opaque, char *errstr,
                   size_t errstr_size) {
        ordo_msg_t m = *tick;
        int p, parts = ordo_kafka_partitions_of_existing(rk, topic, errstr,
                                                         errstr_size);
        if (parts < 0)
                return -1;
        if (tick->u.tick.to_partition) {
                p = tick->u.tick.to_partition - 1;
                if (p >= parts) {
                        snprintf(errstr, errstr_size,
                                 "partition %d: %s has %d partitions (a "
                                 "replayed Tick goes back to its own "
                                 "partition: replay into a topic of as many "
                                 "partitions, or leave the Ticks out; "
                                 "operating.md)",
                                 p, topic, parts);
                        return -2;
                }
                return ordo_send(rk, codec, topic, p, &m, opaque, errstr,
                                 errstr_size)
                           ? -1
                           : 1;
        }
        for (p = 0; p < parts; p++) {
                snprintf(m.meta.id, sizeof(m.meta.id), "%.100s-p%d",
                         tick->meta.id, p);
                if (ordo_send(rk, codec, topic, p, &m, opaque, errstr,
                              errstr_size))
                        return -1;
        }
        return parts;
}
