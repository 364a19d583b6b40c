/*
 * ordo - a processor's join, as its definition describes it (stream.h,
 * ordo_join_t; the commission processor's referral graph,
 * docs/decisions/0004): an assign-only consumer follows the joined topic
 * and every message of the join's type is bound into each partition's
 * state, and kept for states restored later.
 */
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

ordo_err_t ordo__join_open(ordo__proc_t *p) {
        ordo__join_t *j = &p->join;
        if (!p->def->join)
                return ORDO_ERR_OK;
        ordo_topic_name(p->conf, p->def->join->topic, j->topic,
                        sizeof(j->topic));
        j->rk = ordo_kafka_consumer_new(p->conf, NULL, NULL, NULL, p->errstr,
                                        sizeof(p->errstr));
        if (!j->rk)
                return ORDO_ERR_CONFIG;
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
        free(j->kept);
        memset(j, 0, sizeof(*j));
}

static ordo_err_t keep(ordo__proc_t *p, const ordo_msg_t *m) {
        ordo__join_t *j = &p->join;
        int i;
        if (j->n_kept == j->cap_kept) {
                size_t cap = j->cap_kept ? j->cap_kept * 2 : 1024;
                ordo_msg_t *nk = realloc(j->kept, cap * sizeof(*nk));
                if (!nk) {
                        snprintf(p->errstr, sizeof(p->errstr), "out of memory");
                        return ORDO_ERR_NOMEM;
                }
                j->kept = nk;
                j->cap_kept = cap;
        }
        j->kept[j->n_kept++] = *m;
        for (i = 0; i < p->n_states; i++)
                if (p->states[i])
                        p->def->join->bind(p->states[i], m);
        return ORDO_ERR_OK;
}

/* Before each batch: the joined topic up to its last stable offset as of
 * now, so that what was committed there before an input was decided is
 * always seen by it (not only what happened to be prefetched). */
ordo_err_t ordo__join_follow(ordo__proc_t *p) {
        ordo__join_t *j = &p->join;
        rd_kafka_message_t *rkm;
        ordo_msg_t m;
        char why[256];
        int64_t lo, end, deadline = ordo_monotonic_ms() + 10000;
        ordo_err_t err;

        if (!j->rk)
                return ORDO_ERR_OK;
        if ((err = ordo_kafka_watermarks(j->rk, j->topic, 0, &lo, &end,
                                         p->errstr, sizeof(p->errstr))))
                return err;
        ordo_kafka_reader_extend(&j->reader, end);
        while (!err && !j->reader.done && !*p->stop) {
                if (ordo_monotonic_ms() >= deadline) {
                        ORDO_LOG(WARN, p->def->name,
                                 "msg=\"%s not read to its end in 10 s; "
                                 "deciding with what was read\" "
                                 "read_to=%lld end=%lld",
                                 j->topic, (long long)j->reader.next,
                                 (long long)end);
                        break;
                }
                if (!(rkm = ordo_kafka_reader_next(&j->reader, 100)))
                        continue;
                if (!ordo__decode(p, rkm, &m, why, sizeof(why)) &&
                    m.type == p->def->join->type)
                        err = keep(p, &m);
                rd_kafka_message_destroy(rkm);
        }
        return err;
}

/* Joined messages are bound idempotently: a snapshot's state may hold
 * some already. */
void ordo__join_seed(ordo__proc_t *p, void *state) {
        size_t i;
        for (i = 0; i < p->join.n_kept; i++)
                p->def->join->bind(state, &p->join.kept[i]);
}
