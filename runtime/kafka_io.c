/*
 * ordo - reading and writing Kafka (docs/decisions/0020). Workload: a
 * restore or a rebuild reads millions of messages through the reader and
 * the batch; produce is called once per event by every stage.
 */
#include "kafka_io.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "log.h"

/* ---- a partition's stable end ------------------------------------------ */

ordo_err_t ordo_kafka_stable_end(rd_kafka_t *committed, rd_kafka_t *uncommitted,
                                 const char *topic, int32_t partition,
                                 const ordo_stable_end_opts_t *opts,
                                 int64_t *lo, int64_t *end, char *errstr,
                                 size_t errstr_size) {
        int64_t lso, hw = -1, lo2, t0 = ordo_monotonic_ms(), now;
        int64_t next_note = t0 + 2000;

        for (;;) {
                /* own: the stable offset first, so that lso >= hw means
                 * nothing was open at the moment hw was read (lso only
                 * grows); else the end is fixed once, first. */
                if (!opts->own && hw < 0 &&
                    ordo_kafka_watermarks(uncommitted, topic, partition, &lo2,
                                          &hw, errstr, errstr_size))
                        return ORDO_ERR_KAFKA;
                if (ordo_kafka_watermarks(committed, topic, partition, lo, &lso,
                                          errstr, errstr_size))
                        return ORDO_ERR_KAFKA;
                if (opts->own &&
                    ordo_kafka_watermarks(uncommitted, topic, partition, &lo2,
                                          &hw, errstr, errstr_size))
                        return ORDO_ERR_KAFKA;
                if (lso >= hw) {
                        *end = hw;
                        return ORDO_ERR_OK;
                }
                if (opts->stop && *opts->stop) {
                        snprintf(errstr, errstr_size, "interrupted");
                        return ORDO_ERR_INTERRUPTED;
                }
                now = ordo_monotonic_ms();
                if (now - t0 >= opts->wait_ms) {
                        snprintf(errstr, errstr_size,
                                 "%s [%d]: a transaction stayed open for "
                                 "%lld s (stable offset %lld, end %lld)",
                                 topic, (int)partition,
                                 (long long)(opts->wait_ms / 1000),
                                 (long long)lso, (long long)hw);
                        return ORDO_ERR_TIMEOUT;
                }
                if (now >= next_note) {
                        ORDO_LOG(INFO, opts->who,
                                 "msg=\"waiting for an open transaction\" "
                                 "topic=%s partition=%d stable=%lld end=%lld",
                                 topic, (int)partition, (long long)lso,
                                 (long long)hw);
                        next_note = now + 5000;
                }
                usleep(100000);
        }
}

/* ---- reading one partition up to an end --------------------------------- */

/* Not assigned (librdkafka refuses only a consumer that is closing or
 * failed for good): parked, so that the next extend tries again. */
static void reader_assign(ordo_kafka_reader_t *r, int64_t from) {
        rd_kafka_topic_partition_list_t *tp =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_resp_err_t err;
        rd_kafka_topic_partition_list_add(tp, r->topic, r->partition)->offset =
            from;
        err = rd_kafka_assign(r->rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        r->assigned = !err;
        r->parked = !r->assigned;
        if (err)
                ORDO_LOG(WARN, r->who,
                         "msg=\"could not read a partition\" topic=%s "
                         "partition=%d error=\"%s\"",
                         r->topic, (int)r->partition, rd_kafka_err2str(err));
}

void ordo_kafka_reader_open(ordo_kafka_reader_t *r, rd_kafka_t *rk,
                            const char *topic, int32_t partition, int64_t from,
                            int64_t end, const char *who) {
        /* A topic this handle has not met yet: its leader is asked for
         * now. Assigned alone, librdkafka 2.0.2 waits for its 1 s topic
         * scan to ask, and a restore's first read of a join's input
         * waited that second (a soak). Known: nothing is asked. Once per
         * reader, not at every assign (the join's reader is assigned
         * again at each batch's read). */
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
        if (rkt)
                rd_kafka_topic_destroy(rkt);
        r->rk = rk;
        r->topic = topic;
        r->who = who;
        r->partition = partition;
        r->next = from < 0 ? 0 : from; /* a logical offset: its EOF says */
        r->end = end;
        r->held = NULL;
        r->stalled = 0;
        r->parked = r->at_end = 0;
        r->done = r->next >= end;
        r->assigned = 0;
        if (!r->done)
                reader_assign(r, from);
}

void ordo_kafka_reader_extend(ordo_kafka_reader_t *r, int64_t end) {
        r->end = end;
        r->done = r->next >= end && !(r->held && r->held->offset < end);
        if (r->parked && !r->done) {
                r->at_end = 0;
                reader_assign(r, r->next);
        }
}

void ordo_kafka_reader_park(ordo_kafka_reader_t *r) {
        if (!r->assigned || !(r->done || r->at_end))
                return;
        if (!r->done) { /* the end met is its end, until extended */
                r->end = r->next;
                r->done = 1;
        }
        if (r->held) {
                /* the first message past the end: nothing before it is
                 * ever delivered (markers, aborted records) */
                r->next = r->held->offset;
                rd_kafka_message_destroy(r->held);
                r->held = NULL;
        }
        rd_kafka_assign(r->rk, NULL);
        r->assigned = 0;
        r->parked = 1;
}

rd_kafka_message_t *ordo_kafka_reader_next(ordo_kafka_reader_t *r,
                                           int timeout_ms) {
        int64_t deadline = ordo_monotonic_ms() + timeout_ms;
        rd_kafka_message_t *m;

        if (r->held && r->held->offset < r->end) {
                m = r->held;
                r->held = NULL;
                r->next = m->offset + 1;
                r->at_end = 0;
                r->done = r->next >= r->end;
                return m;
        }
        while (!r->done) {
                int64_t left = deadline - ordo_monotonic_ms();
                m = rd_kafka_consumer_poll(r->rk, (int)(left > 0 ? left : 0));
                if (!m) {
                        if (left <= 0)
                                return NULL;
                        continue;
                }
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        /* An end short of ours is from an earlier read of
                         * this handle: keep reading. */
                        if (m->offset >= r->next) {
                                r->next = m->offset;
                                r->at_end = 1;
                        }
                        r->done = r->next >= r->end;
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (m->err) {
                        ORDO_LOG(WARN, r->who,
                                 "msg=\"read error\" topic=%s partition=%d "
                                 "error=\"%s\"",
                                 r->topic, (int)r->partition,
                                 rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                if (m->offset >= r->end) {
                        /* Past the end: kept for a later extend. */
                        if (r->held)
                                rd_kafka_message_destroy(r->held);
                        r->held = m;
                        r->done = 1;
                        r->at_end = 0;
                        return NULL;
                }
                r->next = m->offset + 1;
                r->at_end = 0;
                r->done = r->next >= r->end;
                return m;
        }
        return NULL;
}

rd_kafka_message_t *ordo_kafka_reader_await(ordo_kafka_reader_t *r,
                                            int64_t idle_ms,
                                            volatile sig_atomic_t *stop) {
        int64_t deadline =
            idle_ms < 0 ? INT64_MAX : ordo_monotonic_ms() + idle_ms;
        rd_kafka_message_t *m;

        r->stalled = 0;
        while (!r->done && !(stop && *stop)) {
                int64_t left = deadline - ordo_monotonic_ms();
                if (left <= 0) {
                        r->stalled = 1;
                        return NULL;
                }
                /* short polls, so that a stop is seen within 100 ms */
                if ((m = ordo_kafka_reader_next(r,
                                                left < 100 ? (int)left : 100)))
                        return m;
        }
        return NULL;
}

void ordo_kafka_reader_close(ordo_kafka_reader_t *r) {
        if (r->held)
                rd_kafka_message_destroy(r->held);
        r->held = NULL;
        if (r->assigned)
                rd_kafka_assign(r->rk, NULL);
        r->assigned = 0;
}

ordo_err_t ordo_kafka_check_start(const char *topic, int32_t partition,
                                  int64_t lo, int64_t from, char *errstr,
                                  size_t errstr_size) {
        if (lo <= from)
                return ORDO_ERR_OK;
        snprintf(errstr, errstr_size,
                 "%s [%d] begins at offset %lld, but it is needed from "
                 "offset %lld: its records below were deleted (a retention "
                 "or size limit on the topic?); going on would not give "
                 "what the log said",
                 topic, (int)partition, (long long)lo, (long long)from);
        return ORDO_ERR_CONFIG;
}

int ordo_kafka_records_lost(const rd_kafka_message_t *m, char *errstr,
                            size_t errstr_size) {
        if (m->err != RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
                return 0;
        snprintf(errstr, errstr_size,
                 "%s [%d]: offset %lld is no longer in the log (%s): its "
                 "records were deleted (a retention or size limit on the "
                 "topic?) or the log was cut short (an unclean broker "
                 "failure?); going on from the earliest left would not give "
                 "what the log said",
                 m->rkt ? rd_kafka_topic_name(m->rkt) : "?", (int)m->partition,
                 (long long)m->offset, rd_kafka_message_errstr(m));
        return 1;
}

ordo_err_t ordo_kafka_read_range(
    rd_kafka_t *rk, const char *topic, int32_t partition, int64_t from,
    int64_t end, const char *who, volatile sig_atomic_t *stop,
    void (*fn)(const rd_kafka_message_t *m, void *arg), void *arg) {
        ordo_kafka_reader_t r;
        rd_kafka_message_t *m;
        ordo_err_t err = ORDO_ERR_OK;

        ordo_kafka_reader_open(&r, rk, topic, partition, from, end, who);
        while ((m = ordo_kafka_reader_await(&r, -1, stop))) {
                fn(m, arg);
                rd_kafka_message_destroy(m);
        }
        if (!r.done)
                err = ORDO_ERR_INTERRUPTED;
        ordo_kafka_reader_close(&r);
        return err;
}

/* ---- consuming a batch -------------------------------------------------- */

size_t ordo_kafka_consume_batch(rd_kafka_t *rk,
                                const ordo_kafka_batch_opts_t *opts,
                                rd_kafka_message_t **msgs, size_t max,
                                int wait_ms, int *fatal, char *errstr,
                                size_t errstr_size) {
        size_t n = 0;
        int64_t deadline = ordo_monotonic_ms() + wait_ms;

        *fatal = 0;
        while (n < max) {
                int64_t left = deadline - ordo_monotonic_ms();
                rd_kafka_message_t *m = rd_kafka_consumer_poll(
                    rk, n ? 0 : (int)(left > 0 ? left : 0));
                if (!m) {
                        if (n || left <= 0)
                                break;
                        continue;
                }
                if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                        rd_kafka_fatal_error(rk, errstr, errstr_size);
                        *fatal = 1;
                        rd_kafka_message_destroy(m);
                        break;
                }
                if (ordo_kafka_records_lost(m, errstr, errstr_size)) {
                        *fatal = ORDO_KAFKA_RECORDS_LOST;
                        rd_kafka_message_destroy(m);
                        break;
                }
                if (m->err && !(opts->eofs &&
                                m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                ORDO_LOG(WARN, opts->who,
                                         "msg=\"consume error\" "
                                         "error=\"%s\"",
                                         rd_kafka_message_errstr(m));
                        rd_kafka_message_destroy(m);
                        continue;
                }
                msgs[n++] = m;
        }
        return n;
}

/* ---- producing with back-pressure --------------------------------------- */

rd_kafka_resp_err_t ordo_kafka_produce(rd_kafka_t *rk,
                                       const ordo_kafka_out_t *m, int msgflags,
                                       int wait_ms) {
        rd_kafka_vu_t vu[8];
        rd_kafka_error_t *error;
        rd_kafka_resp_err_t err;
        int64_t deadline = ordo_monotonic_ms() + wait_ms;
        size_t n = 0;

        vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
        vu[n++].u.cstr = m->topic;
        vu[n].vtype = RD_KAFKA_VTYPE_PARTITION;
        vu[n++].u.i32 = m->partition;
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = (void *)m->key;
        vu[n++].u.mem.size = m->key_len;
        vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
        vu[n].u.mem.ptr = (void *)m->value;
        vu[n++].u.mem.size = m->len;
        vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
        vu[n++].u.i = msgflags;
        vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vu[n++].u.ptr = m->opaque;
        if (m->hdrs) {
                vu[n].vtype = RD_KAFKA_VTYPE_HEADERS;
                vu[n++].u.headers = m->hdrs;
        }
        for (;;) {
                error = rd_kafka_produceva(rk, vu, n);
                err = error ? rd_kafka_error_code(error)
                            : RD_KAFKA_RESP_ERR_NO_ERROR;
                if (error)
                        rd_kafka_error_destroy(error);
                if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || !wait_ms ||
                    (wait_ms > 0 && ordo_monotonic_ms() >= deadline))
                        break;
                rd_kafka_poll(rk, 50); /* back-pressure: reports free room */
        }
        /* librdkafka owns the headers only once the message is queued */
        if (err && m->hdrs)
                rd_kafka_headers_destroy(m->hdrs);
        return err;
}

/* A letter's bytes within their budget: bytes itself, len in *kept; else
 * NULL and 0, their length in the header `omitted` (the bytes stay at
 * their source). */
static const void *budgeted(rd_kafka_headers_t *h, const void *bytes,
                            size_t len, size_t max, const char *omitted,
                            size_t *kept) {
        char n[32];

        if (len <= max) {
                *kept = len;
                return bytes;
        }
        snprintf(n, sizeof(n), "%zu", len);
        rd_kafka_header_add(h, omitted, -1, n, -1);
        *kept = 0;
        return NULL;
}

void ordo_dead_letter(const rd_kafka_message_t *source, const char *kind,
                      const char *reason, const char *stage,
                      ordo_kafka_out_t *out) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(8);
        char part[16], off[32];
        const void *type;
        size_t type_len, reason_len = strlen(reason);

        snprintf(part, sizeof(part), "%d", (int)source->partition);
        snprintf(off, sizeof(off), "%lld", (long long)source->offset);
        /* the type the source said it was, for analysts' filters */
        if ((type = ordo_kafka_header(source, ORDO_TYPE_HEADER, &type_len)) &&
            (type = budgeted(h, type, type_len, ORDO_LETTER_TYPE_MAX,
                             "ordo.type.omitted", &type_len)))
                rd_kafka_header_add(h, ORDO_TYPE_HEADER, -1, type,
                                    (ssize_t)type_len);
        rd_kafka_header_add(h, "ordo.kind", -1, kind, -1);
        rd_kafka_header_add(h, "ordo.error", -1, reason,
                            (ssize_t)(reason_len < ORDO_LETTER_REASON_MAX
                                          ? reason_len
                                          : ORDO_LETTER_REASON_MAX));
        if (stage)
                rd_kafka_header_add(h, "ordo.stage", -1, stage, -1);
        rd_kafka_header_add(h, "ordo.source.topic", -1,
                            rd_kafka_topic_name(source->rkt), -1);
        rd_kafka_header_add(h, "ordo.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "ordo.source.offset", -1, off, -1);
        out->hdrs = h;
        out->key =
            budgeted(h, source->key, source->key_len, ORDO_LETTER_KEY_MAX,
                     "ordo.key.omitted", &out->key_len);
        out->value =
            budgeted(h, source->payload, source->len, ORDO_LETTER_PAYLOAD_MAX,
                     "ordo.payload.omitted", &out->len);
}

const void *ordo_kafka_header(const rd_kafka_message_t *m, const char *name,
                              size_t *len) {
        rd_kafka_headers_t *h;
        const void *v;
        if (rd_kafka_message_headers(m, &h) ||
            rd_kafka_header_get_last(h, name, &v, len) || !v)
                return NULL;
        return v;
}
