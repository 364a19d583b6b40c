/*
 * ordo - sending admitted commands to their command topics from a command
 * line tool (`ordo produce`, `ordo tick`): encoded, keyed, with the
 * ordo.type header, waiting for room when librdkafka's queue is full.
 * Delivery is reported to the producer's delivery callback, with opaque
 * as the message's _private; the caller flushes.
 */
#ifndef ORDO_SEND_H
#define ORDO_SEND_H

#include <librdkafka/rdkafka.h>

#include "codec.h"
#include "messages.h"

/* One command to topic (a full name), partition RD_KAFKA_PARTITION_UA to
 * go by its key. 0, or -1 with errstr. */
int ordo_send(rd_kafka_t *rk, ordo_codec_t *codec, const char *topic,
              int32_t partition, const ordo_msg_t *m, void *opaque,
              char *errstr, size_t errstr_size);

/* A Tick to every partition of topic (the order commands), so every
 * partition's timers fire: the copy for partition p has command_id
 * "<tick's command_id>-p<p>". A replayed Tick (u.tick.to_partition)
 * goes back to its one partition as it is (decision 0030). The number of
 * messages sent; -1 with errstr when they could not be (no such topic:
 * at once); -2 with errstr, nothing sent, for a Tick naming a partition
 * the topic does not have (refused: sending it again cannot help). */
int ordo_send_tick(rd_kafka_t *rk, ordo_codec_t *codec, const char *topic,
                   const ordo_msg_t *tick, void *opaque, char *errstr,
                   size_t errstr_size);

#endif
