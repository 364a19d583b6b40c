/*
 * ordo - the read-model store interface (store.h): one MongoDB or one
 * Redis adapter behind open, apply, drop, diff and close, and the
 * narrowing of a batch the store refuses to the events it refuses.
 */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "random.h"
#include "redis_conn.h"

void ordo_stores_init(void) {
        ordo_mongo_init();
}

const char *ordo_store_target_key(const char *which) {
        return strcmp(which, "mongo") ? "redis.prefix" : "mongo.db";
}

ordo_err_t ordo_store_open(ordo_store_t *s, const char *which,
                           const ordo_config_t *conf, const char *target,
                           char *errstr, size_t errstr_size) {
        ordo_err_t why = ORDO_ERR_CONFIG; /* Redis's fails on its settings */
        s->mongo = NULL;
        s->redis = NULL;
        if (!target)
                target = ordo_config_get(conf, ordo_store_target_key(which));
        if (!strcmp(which, "mongo"))
                s->mongo =
                    ordo_mongo_proj_new(ordo_config_get(conf, "mongo.uri"),
                                        target, &why, errstr, errstr_size);
        else
                s->redis = ordo_redis_proj_new(
                    ordo_config_get(conf, "redis.host"),
                    (int)ordo_config_get_int(conf, "redis.port"), target,
                    ordo_config_get_int(conf, "redis.rejected.ttl.s"), errstr,
                    errstr_size);
        if (s->redis) {
                ordo_redis_login_t login;
                ordo_redis_login_from(conf, &login);
                if (ordo_redis_proj_set_login(s->redis, &login, errstr,
                                              errstr_size)) {
                        ordo_redis_proj_destroy(s->redis);
                        s->redis = NULL;
                }
        }
        return s->mongo || s->redis ? ORDO_ERR_OK : why;
}

void ordo_store_on_answer(ordo_store_t *s, ordo_store_answer_fn *fn,
                          void *arg) {
        if (s->mongo)
                ordo_mongo_proj_on_answer(s->mongo, fn, arg);
        else
                ordo_redis_proj_on_answer(s->redis, fn, arg);
}

ordo_err_t ordo_store_apply(ordo_store_t *s, const ordo_event_rec_t *recs,
                            size_t n, char *errstr, size_t errstr_size) {
        if (s->mongo)
                return ordo_mongo_proj_apply(s->mongo, recs, n, errstr,
                                             errstr_size);
        return ordo_redis_proj_apply(s->redis, recs, n, errstr, errstr_size);
}

ordo_err_t ordo_store_mark(ordo_store_t *s, const char *put,
                           char tok[ORDO_MARK_MAX], char *errstr,
                           size_t errstr_size) {
        if (s->mongo)
                return ordo_mongo_proj_mark(s->mongo, put, tok, errstr,
                                            errstr_size);
        return ordo_redis_proj_mark(s->redis, put, tok, errstr, errstr_size);
}

ordo_err_t ordo_store_alive(ordo_store_t *s, const char *instance,
                            int64_t ttl_ms, char *errstr, size_t errstr_size) {
        if (s->mongo)
                return ordo_mongo_proj_alive(s->mongo, instance, ttl_ms, errstr,
                                             errstr_size);
        return ordo_redis_proj_alive(s->redis, instance, ttl_ms, errstr,
                                     errstr_size);
}

int ordo_store_alive_due(int64_t renewed_ms) {
        return !renewed_ms ||
               ordo_monotonic_ms() - renewed_ms >= ORDO_ALIVE_RENEW_MS;
}

int64_t ordo_store_alive_left(const char *which, const ordo_config_t *conf,
                              const char *target, char *errstr,
                              size_t errstr_size) {
        if (!strcmp(which, "mongo"))
                return ordo_mongo_db_alive_left(
                    ordo_config_get(conf, "mongo.uri"), target, errstr,
                    errstr_size);
        return ordo_redis_prefix_alive_left(conf, target, errstr, errstr_size);
}

int ordo_store_targets_named(const char *which, const ordo_config_t *conf,
                             const char *start, ordo_target_fn *fn, void *arg,
                             char *errstr, size_t errstr_size) {
        if (!strcmp(which, "mongo"))
                return ordo_mongo_dbs_named(ordo_config_get(conf, "mongo.uri"),
                                            start, fn, arg, errstr,
                                            errstr_size);
        return ordo_redis_prefixes_named(conf, start, fn, arg, errstr,
                                         errstr_size);
}

void ordo_store_new_mark(char tok[ORDO_MARK_MAX]) {
        unsigned char r[16];
        int i;
        ordo_random_bytes(r, sizeof(r));
        for (i = 0; i < 16; i++)
                snprintf(tok + 2 * i, 3, "%02x", r[i]);
}

/* Documents and earnings entries a rebuild folds before writing: ~0.8 KB
 * each in memory (258 MB for the 1M-event flash-sale log's ~300k), so
 * ~0.4 GB at most; that log is written once, at the end. */
#define MONGO_WINDOW 500000

ordo_err_t ordo_store_fresh_target(ordo_store_t *s,
                                   volatile sig_atomic_t *stop) {
        if (s->redis)
                ordo_redis_proj_set_fresh(s->redis);
        return s->mongo ? ordo_mongo_proj_buffer(s->mongo, MONGO_WINDOW, stop)
                        : ORDO_ERR_OK;
}

ordo_err_t ordo_store_flush(ordo_store_t *s, char *errstr, size_t errstr_size) {
        return s->mongo ? ordo_mongo_proj_flush(s->mongo, errstr, errstr_size)
                        : ORDO_ERR_OK;
}

int64_t ordo_store_refused(const ordo_store_t *s) {
        return ordo_mongo_proj_refused(s->mongo);
}

int ordo_store_err_permanent(ordo_err_t err) {
        /* Out of memory is ours and passes; everything else but an
         * outage is the store refusing the write. */
        return err != ORDO_ERR_OK && err != ORDO_ERR_UNAVAILABLE &&
               err != ORDO_ERR_NOMEM;
}

ordo_err_t ordo_store_apply_parking(ordo_store_t *s,
                                    const ordo_event_rec_t *recs, size_t n,
                                    ordo_park_fn *park, void *opaque,
                                    size_t *settled, char *errstr,
                                    size_t errstr_size) {
        char why[512];
        ordo_err_t err;
        size_t i;

        if (settled)
                *settled = 0;
        err = ordo_store_apply(s, recs, n, errstr, errstr_size);
        if (!ordo_store_err_permanent(err))
                return err;
        ORDO_LOG(WARN, "projection",
                 "msg=\"store refused a write; applying the batch event by "
                 "event\" events=%zu error=\"%s\"",
                 n, errstr);
        for (i = 0; i < n; i++) {
                err = ordo_store_apply(s, &recs[i], 1, why, sizeof(why));
                if (ordo_store_err_permanent(err))
                        park(opaque, &recs[i], err, why);
                else if (err) {
                        snprintf(errstr, errstr_size, "%s", why);
                        return err;
                }
                if (settled)
                        *settled = i + 1;
        }
        return ORDO_ERR_OK;
}

void ordo_store_close(ordo_store_t *s) {
        ordo_mongo_proj_destroy(s->mongo);
        ordo_redis_proj_destroy(s->redis);
        s->mongo = NULL;
        s->redis = NULL;
}

int ordo_store_may_come_back_empty(const ordo_store_t *s) {
        return s->redis != NULL;
}

int ordo_store_target_used(const char *which, const ordo_config_t *conf,
                           const char *target, char *errstr,
                           size_t errstr_size) {
        if (!strcmp(which, "mongo"))
                return ordo_mongo_db_used(ordo_config_get(conf, "mongo.uri"),
                                          target, errstr, errstr_size);
        return ordo_redis_prefix_used(conf, target, errstr, errstr_size);
}

ordo_err_t ordo_store_drop(const char *which, const ordo_config_t *conf,
                           const char *target, char *errstr,
                           size_t errstr_size) {
        if (!strcmp(which, "mongo"))
                return ordo_mongo_db_drop(ordo_config_get(conf, "mongo.uri"),
                                          target, errstr, errstr_size);
        return ordo_redis_prefix_drop(conf, target, errstr, errstr_size);
}

ordo_err_t ordo_store_diff(const char *which, const ordo_config_t *conf,
                           const char *expected, ordo_diff_t *d, char *errstr,
                           size_t errstr_size) {
        const char *live = ordo_config_get(conf, ordo_store_target_key(which));
        if (!strcmp(which, "mongo"))
                return ordo_mongo_diff(ordo_config_get(conf, "mongo.uri"), live,
                                       expected, d, errstr, errstr_size);
        return ordo_redis_diff(conf, live, expected, d, errstr, errstr_size);
}

void ordo_diff_line(ordo_diff_t *d, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        d->vline(d->opaque, fmt, ap);
        va_end(ap);
}

int ordo_diff_stopped(ordo_diff_t *d) {
        int64_t now = ordo_monotonic_ms();
        if (d->tick)
                d->tick(d->tick_arg);
        if (!d->said_ms)
                d->said_ms = now;
        else if (now - d->said_ms >= 10000) {
                d->said_ms = now;
                fprintf(stderr,
                        "ordo reconcile: comparing: %lld compared, %lld "
                        "difference(s) so far\n",
                        (long long)d->compared, (long long)d->diffs);
        }
        if (!d->stop || !*d->stop)
                return 0;
        if (!d->stopped++)
                d->errors++; /* what was not compared is no finding */
        return 1;
}

#define BACKOFF_MAX_MS 5000

ordo_err_t ordo_store_apply_until_done(ordo_store_t *s, const char *stage,
                                       const ordo_event_rec_t *recs, size_t n,
                                       ordo_park_fn *park, void *opaque,
                                       ordo_wait_fn *wait, void *wait_opaque,
                                       volatile sig_atomic_t *stop,
                                       char *errstr, size_t errstr_size) {
        int backoff = 100, waited = 0;
        size_t off = 0, settled;
        ordo_err_t err;

        while ((err = ordo_store_apply_parking(s, recs + off, n - off, park,
                                               opaque, &settled, errstr,
                                               errstr_size))) {
                int slept;
                off += settled;
                /* The first time: the wait pauses the consumer, and asks
                 * (a store that restarted at once may be back empty). */
                if (!waited && wait && wait(wait_opaque, 1))
                        return err;
                waited = 1;
                ORDO_LOG(WARN, stage,
                         "msg=\"store unavailable, retrying\" backoff_ms=%d "
                         "error=\"%s\"",
                         backoff, errstr);
                /* In steps, so that a stop does not wait the backoff out. */
                for (slept = 0; slept < backoff && !*stop; slept += 50)
                        usleep(50 * 1000);
                if (*stop)
                        break;
                /* Asked before each retry writes: a store that came back
                 * empty during the wait must be seen empty, not written
                 * to (asking only before the sleep saw it only when it
                 * restarted faster than the first backoff). */
                if (wait && wait(wait_opaque, 0))
                        return err;
                backoff =
                    backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        }
        if (waited && !err)
                ORDO_LOG(INFO, stage, "msg=\"store back\"");
        return err;
}
