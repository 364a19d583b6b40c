/*
 * ordo - the end of a batch (docs/decisions/0018, 0019). Exactly once:
 * send the consumed offsets into the transaction, wait for every
 * delivery report, commit (retrying what librdkafka calls retriable),
 * or abort. At least once: wait for every delivery report, then commit
 * the offsets in the group. Pipelined (processing.pipeline=1), a worker
 * thread does it while the loop decides the next batch into the outbox;
 * the worker owns the producer until ordo__commit_wait() joins it.
 *
 * Errors are classified as librdkafka documents them: fatal loses the
 * partitions (the loop rejoins, 0009), abortable aborts the batch (the
 * loop rewinds and restores, 0004), retriable retries the commit.
 */
#include "stream_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

/* a transaction's end (offsets, deliveries, commit) this slow is logged */
#define SLOW_END_MS 1000

static ordo__txn_result_t txn_fail(ordo__proc_t *p, char *errstr,
                                   size_t errstr_size, rd_kafka_error_t *error,
                                   const char *step) {
        int fatal = rd_kafka_error_is_fatal(error);
        rd_kafka_error_t *aerr;

        snprintf(errstr, errstr_size, "%s: %s", step,
                 rd_kafka_error_string(error));
        if (p->at_least_once) {
                /* Nothing to abort: what was produced stays (0019). Wait
                 * for it, so that its reports do not fail the next batch;
                 * the loop rewinds and decides it again. */
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"batch failed, rewinding\" %s=\"%s\"", step,
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                if (rd_kafka_flush(p->producer, 30000) ||
                    rd_kafka_fatal_error(p->producer, NULL, 0))
                        return ORDO__TXN_FATAL;
                return fatal ? ORDO__TXN_FATAL : ORDO__TXN_ABORTED;
        }
        if (fatal) {
                rd_kafka_error_destroy(error);
                return ORDO__TXN_FATAL;
        }
        ORDO_LOG(WARN, p->def->name, "msg=\"aborting transaction\" %s=\"%s\"",
                 step, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        aerr = rd_kafka_abort_transaction(p->producer, 30000);
        if (aerr) {
                snprintf(errstr, errstr_size, "abort: %s",
                         rd_kafka_error_string(aerr));
                rd_kafka_error_destroy(aerr);
                return ORDO__TXN_FATAL;
        }
        return ORDO__TXN_ABORTED;
}

ordo__txn_result_t ordo__txn_begin(ordo__proc_t *p) {
        rd_kafka_error_t *error;
        p->commit.t0 = ordo_monotonic_ms();
        if (!p->at_least_once &&
            (error = rd_kafka_begin_transaction(p->producer)))
                return ordo__txn_abort_now(p, error, "begin");
        /* serve the reports of an aborted transaction's purged messages
         * first: they belong to it, not to this one */
        rd_kafka_poll(p->producer, 0);
        p->delivery_err = RD_KAFKA_RESP_ERR_NO_ERROR;
        return ORDO__TXN_OK;
}

/* Waits for every delivery report of the batch (commit would flush
 * too, but then the reports are served after the commit) and returns an
 * error if one failed: librdkafka 2.0.2 can report a message a partition
 * refused as delivered without an offset when a later batch succeeds
 * ("implicit ack", docs/decisions/0012), and committing then would
 * commit input offsets past an event that is not in the log. */
static rd_kafka_error_t *deliveries_failed(ordo__proc_t *p) {
        rd_kafka_resp_err_t err = rd_kafka_flush(p->producer, 30000);
        if (err)
                return rd_kafka_error_new(err, "flush: %s",
                                          rd_kafka_err2str(err));
        if (!p->delivery_err)
                return NULL;
        return rd_kafka_error_new(
            p->delivery_err, "%s [%d]: %s", p->delivery_topic,
            (int)p->delivery_partition,
            p->delivery_err == RD_KAFKA_RESP_ERR__INCONSISTENT
                ? "acknowledged without an offset, not in the log"
                : rd_kafka_err2str(p->delivery_err));
}

static ordo__txn_result_t end_exactly_once(ordo__proc_t *p, ordo__commit_t *c) {
        rd_kafka_error_t *error = NULL;
        int attempt;
        int64_t t = ordo_monotonic_ms();

        /* before the flush, so that the messages fly meanwhile */
        if (c->offsets->cnt && (error = rd_kafka_send_offsets_to_transaction(
                                    p->producer, c->offsets, c->cgmd, -1)))
                return txn_fail(p, c->errstr, sizeof(c->errstr), error,
                                "send_offsets");
        c->offsets_ms = ordo_monotonic_ms() - t;
        t += c->offsets_ms;
        if ((error = deliveries_failed(p)))
                return txn_fail(p, c->errstr, sizeof(c->errstr), error,
                                "delivery");
        c->deliveries_ms = ordo_monotonic_ms() - t;
        t += c->deliveries_ms;
        for (attempt = 0;; attempt++) {
                error = rd_kafka_commit_transaction(p->producer, -1);
                c->end_ms = ordo_monotonic_ms() - t;
                if (!error)
                        return ORDO__TXN_OK;
                if (!rd_kafka_error_is_retriable(error) || attempt >= 10)
                        return txn_fail(p, c->errstr, sizeof(c->errstr), error,
                                        "commit");
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"retrying commit\" error=\"%s\"",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                usleep(100000);
        }
}

/* Offsets only after every output is in the log: a crash in between
 * decides the batch again (0019). */
static ordo__txn_result_t end_at_least_once(ordo__proc_t *p,
                                            ordo__commit_t *c) {
        rd_kafka_error_t *error;
        rd_kafka_resp_err_t err;
        int64_t t = ordo_monotonic_ms();

        if ((error = deliveries_failed(p)))
                return txn_fail(p, c->errstr, sizeof(c->errstr), error,
                                "delivery");
        c->deliveries_ms = ordo_monotonic_ms() - t;
        t += c->deliveries_ms;
        err = c->offsets->cnt ? rd_kafka_commit(p->consumer, c->offsets, 0)
                              : RD_KAFKA_RESP_ERR_NO_ERROR;
        c->offsets_ms = ordo_monotonic_ms() - t;
        if (err) {
                snprintf(c->errstr, sizeof(c->errstr), "commit offsets: %s",
                         rd_kafka_err2str(err));
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"batch failed, rewinding\" error=\"%s\"",
                         c->errstr);
                return ORDO__TXN_ABORTED;
        }
        return ORDO__TXN_OK;
}

static void *end_batch(void *arg) {
        ordo__proc_t *p = arg;
        ordo__commit_t *c = &p->commit;
        c->started = ordo_monotonic_ms();
        c->result =
            p->at_least_once ? end_at_least_once(p, c) : end_exactly_once(p, c);
        c->ended = ordo_monotonic_ms();
        __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
        return NULL;
}

void ordo__commit_start(ordo__proc_t *p,
                        rd_kafka_topic_partition_list_t *offsets) {
        ordo__commit_t *c = &p->commit;
        c->offsets = offsets;
        c->cgmd = p->at_least_once
                      ? NULL
                      : rd_kafka_consumer_group_metadata(p->consumer);
        c->errstr[0] = '\0';
        c->offsets_ms = c->deliveries_ms = c->end_ms = 0;
        c->done = 0;
        c->pending = 1;
        c->threaded =
            p->pipelined && pthread_create(&c->thread, NULL, end_batch, p) == 0;
        if (c->threaded) {
                char name[16]; /* the kernel's limit, with its NUL */
                snprintf(name, sizeof(name), "txn:%s", p->def->name);
                pthread_setname_np(c->thread, name);
        } else
                end_batch(p);
}

/* Books a finished transaction: the committed input offsets and
 * snapshot, counters and metrics; or the failure for the loop. */
static void settle(ordo__proc_t *p, ordo__txn_result_t r) {
        ordo__commit_t *c = &p->commit;
        int64_t ms;
        int i;

        ordo__snapshots_done(p, r == ORDO__TXN_OK);
        if (r != ORDO__TXN_OK) {
                /* A fatal one (fenced, or its abort failed too: the
                 * broker away) is aborted all the same, by the broker or
                 * the next producer: counted, or a broker outage left
                 * the aborts alert silent (an outside audit). */
                p->stats->aborts++;
                ordo_metrics_abort(p->def->name);
                if (!p->failed)
                        p->failed = r;
                return;
        }
        for (i = 0; c->offsets && i < c->offsets->cnt; i++)
                if (c->offsets->elems[i].partition < p->n_states)
                        p->parts[c->offsets->elems[i].partition].input_next =
                            c->offsets->elems[i].offset;
        ms = ordo_monotonic_ms() - c->t0;
        p->stats->transactions++;
        p->stats->txn_ms += ms;
        p->stats->offsets_ms += c->offsets_ms;
        p->stats->deliveries_ms += c->deliveries_ms;
        p->stats->end_txn_ms += c->end_ms;
        ordo_metrics_transaction(p->def->name, ms);
        ordo_metrics_transaction_end(p->def->name, c->offsets_ms,
                                     c->deliveries_ms, c->end_ms);
        ORDO_LOG(DEBUG, p->def->name,
                 "msg=transaction inputs=%zu outputs=%zu ms=%lld "
                 "offsets_ms=%lld deliveries_ms=%lld end_txn_ms=%lld "
                 "to_worker_ms=%lld to_loop_ms=%lld",
                 c->inputs, c->outputs, (long long)ms, (long long)c->offsets_ms,
                 (long long)c->deliveries_ms, (long long)c->end_ms,
                 (long long)(c->started - c->t0),
                 (long long)(ordo_monotonic_ms() - c->ended));
        /* a slow end is the broker's, not ours: say which step waited */
        if (c->offsets_ms + c->deliveries_ms + c->end_ms >= SLOW_END_MS)
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"slow transaction end\" ms=%lld offsets_ms=%lld "
                         "deliveries_ms=%lld end_txn_ms=%lld",
                         (long long)ms, (long long)c->offsets_ms,
                         (long long)c->deliveries_ms, (long long)c->end_ms);
}

/* pthread_join, looking again every second whether the worker ended.
 * Once (session 12, a flash sale on this box, during a 15 s broker stall
 * that timed out the group sessions) a plain join inside the rebalance
 * callback slept ten minutes on a worker that had already exited, until
 * a signal interrupted the wait: a lost wake-up, never explained. A
 * timed join reads the worker's state again after each timeout. */
static void join_worker(ordo__proc_t *p) {
        ordo__commit_t *c = &p->commit;
        int64_t t0 = ordo_monotonic_ms();
        struct timespec ts;
        int rounds = 0;

        for (;;) {
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                if (pthread_timedjoin_np(c->thread, NULL, &ts) != ETIMEDOUT)
                        break;
                if (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) && !rounds++)
                        ORDO_LOG(WARN, p->def->name,
                                 "msg=\"transaction worker ended but its "
                                 "join is still waiting\"");
        }
        if (rounds)
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"transaction worker joined late\" ms=%lld",
                         (long long)(ordo_monotonic_ms() - t0));
}

ordo__txn_result_t ordo__commit_wait(ordo__proc_t *p) {
        ordo__commit_t *c = &p->commit;
        int64_t t = ordo_monotonic_ms();
        ordo__txn_result_t r;

        if (!c->pending)
                return ORDO__TXN_OK;
        if (c->threaded)
                join_worker(p);
        p->stats->commit_wait_ms += ordo_monotonic_ms() - t;
        c->pending = c->threaded = 0;
        r = c->result;
        if (r != ORDO__TXN_OK)
                ordo_strlcpy(p->errstr, c->errstr, sizeof(p->errstr));
        settle(p, r);
        if (c->cgmd)
                rd_kafka_consumer_group_metadata_destroy(c->cgmd);
        rd_kafka_topic_partition_list_destroy(c->offsets);
        c->cgmd = NULL;
        c->offsets = NULL;
        return r;
}

ordo__txn_result_t ordo__txn_abort_now(ordo__proc_t *p, rd_kafka_error_t *error,
                                       const char *step) {
        ordo__txn_result_t r =
            txn_fail(p, p->errstr, sizeof(p->errstr), error, step);
        settle(p, r);
        return r;
}
