/*
 * ordo - a processor's join, as its definition describes it (stream.h,
 * ordo_join_t; the commission processor's referral graph,
 * docs/decisions/0004): an assign-only consumer follows the joined topic
 * and every message of the join's type is bound into each partition's
 * state, and kept for states restored later. Between reads it is parked
 * at its end (unassigned): an assigned reader asks the broker every 10 ms,
 * which made an idle commission stage cost its broker as much as the
 * other five stages together (bench/RESULTS.md session 27).
 *
 * Before deciding, the loop also waits for the joined topic's writer
 * (decision 0025): a binding whose BindReferrer was written before the
 * payment it should count for may still be in the referral processor's
 * input when the OrderPaid arrives here. Once that processor's group has
 * committed everything written to its input by then, its events for it
 * are committed too (the same transaction), and reading the joined topic
 * to its stable end takes them in.
 */
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

ordo_err_t ordo__join_open(ordo__proc_t *p) {
        ordo__join_t *j = &p->join;
        const ordo_join_t *def = p->def->join;
        char group[256];
        if (!def)
                return ORDO_ERR_OK;
        ordo_topic_name(p->conf, def->topic, j->topic, sizeof(j->topic));
        j->rk = ordo_kafka_consumer_new(p->conf, NULL, NULL, NULL, p->errstr,
                                        sizeof(p->errstr));
        if (!j->rk)
                return ORDO_ERR_CONFIG;
        j->wait_ms = ordo_config_get_int(p->conf, "join.wait.ms");
        j->writer_committed = 0;
        j->caught_up_to = -1;
        if (def->writer && j->wait_ms > 0) {
                ordo_topic_name(p->conf, def->writer_input, j->writer_input,
                                sizeof(j->writer_input));
                /* never subscribes: only asked for committed offsets */
                ordo_kafka_group(p->conf, def->writer, group, sizeof(group));
                j->writer = ordo_kafka_consumer_new(
                    p->conf, group, NULL, NULL, p->errstr, sizeof(p->errstr));
                if (!j->writer)
                        return ORDO_ERR_CONFIG;
        }
        /* From its start; each follow moves the end on. */
        ordo_kafka_reader_open(&j->reader, j->rk, j->topic, 0,
                               RD_KAFKA_OFFSET_BEGINNING, INT64_MAX,
                               p->def->name);
        return ORDO_ERR_OK;
}

void ordo__join_close(ordo__proc_t *p) {
        ordo__join_t *j = &p->join;
        if (j->rk) {
                ordo_kafka_reader_close(&j->reader);
                rd_kafka_destroy(j->rk);
        }
        if (j->writer)
                rd_kafka_destroy(j->writer);
        free(j->kept);
        memset(j, 0, sizeof(*j));
}

static ordo_err_t keep(ordo__proc_t *p, const rd_kafka_message_t *rkm,
                       const ordo_msg_t *m) {
        ordo__join_t *j = &p->join;
        uint32_t len = (uint32_t)rkm->len; /* it decoded: a small message */
        int i;
        if (j->kept_len + sizeof(len) + len > j->cap_kept) {
                size_t cap = j->cap_kept ? j->cap_kept : 65536;
                char *nk;
                while (cap < j->kept_len + sizeof(len) + len)
                        cap *= 2;
                if (!(nk = realloc(j->kept, cap))) {
                        snprintf(p->errstr, sizeof(p->errstr), "out of memory");
                        return ORDO_ERR_NOMEM;
                }
                j->kept = nk;
                j->cap_kept = cap;
        }
        memcpy(j->kept + j->kept_len, &len, sizeof(len));
        memcpy(j->kept + j->kept_len + sizeof(len), rkm->payload, len);
        j->kept_len += sizeof(len) + len;
        for (i = 0; i < p->n_states; i++)
                if (p->states[i])
                        p->def->join->bind(p->states[i], m);
        return ORDO_ERR_OK;
}

/* A message of the joined topic, bound if it is of the join's type;
 * one that does not decode is not (the joined processor's dead letter). */
static ordo_err_t bind_message(ordo__proc_t *p, const rd_kafka_message_t *rkm) {
        ordo_msg_t m;
        char why[256];
        if (ordo__decode(p, rkm, &m, why, sizeof(why)) ||
            m.type != p->def->join->type)
                return ORDO_ERR_OK;
        return keep(p, rkm, &m);
}

/* Reads the joined topic up to end (exclusive; a stable end, which no
 * open transaction holds back), binding what it holds. Stopped, or
 * nothing read for 10 s short of the end (the fetch stalled: a broker
 * away): an error, and the batch aborts. Deciding with part of what is
 * committed would lose commissions for good, and make the decisions
 * depend on timing. What was read stays bound: the batch's next attempt
 * reads on from there, and a long read that moves is never cut short. */
static ordo_err_t read_to(ordo__proc_t *p, int64_t end) {
        ordo__join_t *j = &p->join;
        rd_kafka_message_t *rkm;
        ordo_err_t err = ORDO_ERR_OK;

        ordo_kafka_reader_extend(&j->reader, end);
        while (!err &&
               (rkm = ordo_kafka_reader_await(&j->reader, 10000, p->stop))) {
                err = bind_message(p, rkm);
                rd_kafka_message_destroy(rkm);
        }
        if (!err && j->reader.done)
                /* no fetches while idle (a reader's are 100 a second) */
                ordo_kafka_reader_park(&j->reader);
        if (err || j->reader.done)
                return err;
        if (j->reader.stalled) {
                snprintf(p->errstr, sizeof(p->errstr),
                         "nothing read from %s for 10 s at offset %lld, "
                         "short of its end %lld; the batch waits for it",
                         j->topic, (long long)j->reader.next, (long long)end);
                return ORDO_ERR_TIMEOUT;
        }
        snprintf(p->errstr, sizeof(p->errstr), "stopped while reading %s",
                 j->topic);
        return ORDO_ERR_INTERRUPTED;
}

/* The joined topic up to its last stable offset as of now (not only
 * what happened to be prefetched). Read only before deciding: not at
 * every turn of the loop, which asked the broker for the end 50 times a
 * second while idle (batch.ms). */
static ordo_err_t follow(ordo__proc_t *p) {
        ordo__join_t *j = &p->join;
        int64_t lo, end;
        ordo_err_t err;

        if (!j->rk)
                return ORDO_ERR_OK;
        if ((err = ordo_kafka_watermarks(j->rk, j->topic, 0, &lo, &end,
                                         p->errstr, sizeof(p->errstr))) ||
            (err = ordo_kafka_check_start(j->topic, 0, lo, 0, p->errstr,
                                          sizeof(p->errstr))))
                return err;
        return read_to(p, end);
}

/* Waits until the writer's group has committed its input as far as it
 * was written when we asked. Not within join.wait.ms (the writer is
 * stopped, or not deployed): ORDO_ERR_TIMEOUT, and the batch aborts and
 * is tried again, for as long as it takes. Deciding with what the joined
 * topic holds would lose the commission of a binding sent before the
 * payment for good (an outside audit: a referral processor down for
 * 40 s, 20 commissions lost); a stage that waits loses nothing, and its
 * lag and WARN lines say why it waits. */
static ordo_err_t writer_caught_up(ordo__proc_t *p, int64_t *writer_end) {
        ordo__join_t *j = &p->join;
        rd_kafka_topic_partition_list_t *tp;
        rd_kafka_resp_err_t kerr;
        int64_t lo, end, c, deadline = ordo_monotonic_ms() + j->wait_ms;
        useconds_t pause = 2000;
        ordo_err_t err;

        if ((err = ordo_kafka_watermarks(p->watermarks, j->writer_input, 0, &lo,
                                         &end, p->errstr, sizeof(p->errstr))))
                return err;
        *writer_end = end;
        if (end <= lo || end <= j->writer_committed)
                return ORDO_ERR_OK;
        tp = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(tp, j->writer_input, 0);
        for (;;) {
                tp->elems[0].offset = RD_KAFKA_OFFSET_INVALID;
                if ((kerr = rd_kafka_committed(j->writer, tp, 10000)) ||
                    (kerr = tp->elems[0].err)) {
                        snprintf(p->errstr, sizeof(p->errstr),
                                 "committed offset of %s in the %s group: %s",
                                 j->writer_input, p->def->join->writer,
                                 rd_kafka_err2str(kerr));
                        err = ORDO_ERR_KAFKA;
                        break;
                }
                c = tp->elems[0].offset < lo ? lo : tp->elems[0].offset;
                if (c > j->writer_committed)
                        j->writer_committed = c;
                if (c >= end)
                        break;
                if (*p->stop) { /* the batch aborts, for the next owner */
                        snprintf(p->errstr, sizeof(p->errstr),
                                 "stopped while waiting for the %s processor",
                                 p->def->join->writer);
                        err = ORDO_ERR_INTERRUPTED;
                        break;
                }
                if (ordo_monotonic_ms() >= deadline) {
                        snprintf(p->errstr, sizeof(p->errstr),
                                 "the %s processor has not decided its "
                                 "input within join.wait.ms (committed %lld "
                                 "of %lld); the batch waits for it: is it "
                                 "running?",
                                 p->def->join->writer, (long long)c,
                                 (long long)end);
                        err = ORDO_ERR_TIMEOUT;
                        break;
                }
                /* 2 ms while the writer is a moment behind, up to 50 ms
                 * while it is away: each look asks the coordinator */
                usleep(pause);
                if (pause < 50000)
                        pause = pause * 2 > 50000 ? 50000 : pause * 2;
        }
        rd_kafka_topic_partition_list_destroy(tp);
        return err;
}

/* Whether a run of inputs holds one whose decision reads the join (by
 * the type header ordo's producers set; a message without one may). */
static int reads_join(const ordo__proc_t *p, rd_kafka_message_t **msgs,
                      size_t n) {
        const char *want = ordo_msg_type_name(p->def->join->reader);
        rd_kafka_headers_t *h;
        const void *v;
        size_t i, len;
        for (i = 0; i < n; i++)
                if (rd_kafka_message_headers(msgs[i], &h) ||
                    rd_kafka_header_get_last(h, ORDO_TYPE_HEADER, &v, &len) ||
                    (len == strlen(want) && !memcmp(v, want, len)))
                        return 1;
        return 0;
}

ordo_err_t ordo__join_catch_up(ordo__proc_t *p, rd_kafka_message_t **msgs,
                               size_t n) {
        ordo__join_t *j = &p->join;
        const ordo_stable_end_opts_t opts = { p->def->name, 0, j->wait_ms,
                                              p->stop };
        int64_t lo, end, writer_end = -1;
        ordo_err_t err;

        if (!j->rk || !n)
                return ORDO_ERR_OK;
        if (!j->writer)
                return follow(p);
        if (!reads_join(p, msgs, n))
                return ORDO_ERR_OK;
        if ((err = writer_caught_up(p, &writer_end)))
                return err;
        /* Nothing sent to the writer since we last read all it decided:
         * nothing new to bind (its events come only from its input). */
        if (writer_end == j->caught_up_to)
                return ORDO_ERR_OK;
        /* What the writer committed may wait for its markers a moment. */
        err = ordo_kafka_stable_end(j->rk, p->watermarks, j->topic, 0, &opts,
                                    &lo, &end, p->errstr, sizeof(p->errstr));
        if (err == ORDO_ERR_TIMEOUT)
                return follow(p);
        if (!err)
                err = ordo_kafka_check_start(j->topic, 0, lo, 0, p->errstr,
                                             sizeof(p->errstr));
        if (!err && !(err = read_to(p, end)) &&
            j->writer_committed >= writer_end)
                j->caught_up_to = writer_end;
        return err;
}

ordo_err_t ordo__join_idle(ordo__proc_t *p) {
        ordo_kafka_reader_t *r = &p->join.reader;
        rd_kafka_message_t *rkm;
        if (!p->join.rk || !r->assigned)
                return ORDO_ERR_OK;
        /* what it has fetched, without waiting: read before the next
         * batch anyway, and all committed */
        while (!*p->stop && (rkm = ordo_kafka_reader_next(r, 0))) {
                ordo_err_t err = bind_message(p, rkm);
                rd_kafka_message_destroy(rkm);
                if (err)
                        return err; /* read and not bound: lost */
        }
        ordo_kafka_reader_park(r); /* if it met the end */
        return ORDO_ERR_OK;
}

/* Joined messages are bound idempotently: a snapshot's state may hold
 * some already. */
void ordo__join_seed(ordo__proc_t *p, void *state) {
        ordo__join_t *j = &p->join;
        size_t at = 0;
        uint32_t len;
        while (at < j->kept_len) {
                memcpy(&len, j->kept + at, sizeof(len));
                at += sizeof(len);
                /* the same bytes decoded once already, by the same codec */
                if (!ordo_codec_decode(p->codec, j->kept + at, len, &j->seeding,
                                       NULL, 0))
                        p->def->join->bind(state, &j->seeding);
                at += len;
        }
}
