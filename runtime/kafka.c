#include "kafka.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "clock.h"

static const struct {
        const char *name;
        int single;
        int compact;
} topics[ORDO_TOPIC__COUNT] = {
#define X(e, n, single, compact) { n, single, compact },
        ORDO_TOPICS(X)
#undef X
};

const char *ordo_topic_short(ordo_topic_t t) {
        return t < ORDO_TOPIC__COUNT ? topics[t].name : "?";
}

ordo_topic_t ordo_topic_from_short(const char *short_name) {
        int t;
        for (t = 0; t < ORDO_TOPIC__COUNT; t++)
                if (!strcmp(topics[t].name, short_name))
                        return (ordo_topic_t)t;
        return ORDO_TOPIC__COUNT;
}

int ordo_topic_is_snapshots(ordo_topic_t t) {
        return t < ORDO_TOPIC__COUNT && topics[t].compact;
}

ordo_topic_t ordo_command_topic(ordo_msg_type_t type) {
        const char *to = ordo_msg_routed_to(type);
        return ordo_msg_is_event(type) || !to ? ORDO_TOPIC__COUNT
                                              : ordo_topic_from_short(to);
}

void ordo_topic_name(const ordo_config_t *conf, ordo_topic_t t, char *buf,
                     size_t size) {
        ordo_config_topic(conf, ordo_topic_short(t), buf, size);
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
                   const char *buf) {
        char q[1024];
        (void)rk;
        if (level <= 3)
                ORDO_LOG(ERROR, "kafka", "fac=%s msg=\"%s\"", fac,
                         ordo_log_quote(q, sizeof(q), buf));
        else if (level <= 4)
                ORDO_LOG(WARN, "kafka", "fac=%s msg=\"%s\"", fac,
                         ordo_log_quote(q, sizeof(q), buf));
        else
                ORDO_LOG(DEBUG, "kafka", "fac=%s msg=\"%s\"", fac,
                         ordo_log_quote(q, sizeof(q), buf));
}

typedef struct {
        rd_kafka_conf_t *rconf;
        char *errstr;
        size_t errstr_size;
        int failed;
} pass_t;

/* librdkafka properties that ordo's guarantees rest on, set by ordo per
 * client: one passed through would let stages fence each other (a shared
 * transactional or group id), read aborted events, commit offsets
 * outside the transaction, or put keys on other partitions than the
 * processors' state (RULES.md "routed by"). NULL: the reason. */
static const char *reserved_kafka_key(const char *name, const char *value) {
        static const struct {
                const char *name, *why;
        } reserved[] = {
                { "transactional.id", "one per stage and instance.id" },
                { "group.id", "one per stage, from group.prefix" },
                { "isolation.level", "read_committed: no aborted event" },
                { "enable.auto.commit",
                  "offsets are committed with each batch" },
                { "auto.commit.enable",
                  "offsets are committed with each batch" },
                { "enable.auto.offset.store",
                  "offsets are committed with each batch" },
                { "enable.idempotence",
                  "exactly-once and at-least-once need it" },
                { "partitioner", "murmur2_random, as Java's: a key's "
                                 "partition is its state's" },
                { "partition.assignment.strategy",
                  "the eager range assignor: 2.0.2's cooperative path has "
                  "bugs" },
                { "auto.offset.reset",
                  "error for a group member: deleted records are reported, "
                  "not skipped" },
        };
        size_t i;
        /* empty: dynamic membership, the documented opt-out (0009) */
        if (!strcmp(name, "group.instance.id"))
                return *value ? "one per stage, from instance.id; empty "
                                "turns static membership off"
                              : NULL;
        for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
                if (!strcmp(name, reserved[i].name))
                        return reserved[i].why;
        return NULL;
}

static void pass_kafka_key(void *opaque, const char *key, const char *value) {
        pass_t *p = opaque;
        char msg[512];
        const char *why;
        if (p->failed || strncmp(key, "kafka.", 6))
                return;
        if ((why = reserved_kafka_key(key + 6, value))) {
                snprintf(p->errstr, p->errstr_size,
                         "configuration key \"%s\": set by ordo (%s), not "
                         "configurable",
                         key, why);
                p->failed = 1;
                return;
        }
        if (rd_kafka_conf_set(p->rconf, key + 6, value, msg, sizeof(msg)) !=
            RD_KAFKA_CONF_OK) {
                /* librdkafka names the key without ordo's "kafka." */
                snprintf(p->errstr, p->errstr_size,
                         "configuration key \"%s\": %s", key, msg);
                p->failed = 1;
        }
}

static int set(rd_kafka_conf_t *rconf, const char *key, const char *value,
               char *errstr, size_t errstr_size) {
        return rd_kafka_conf_set(rconf, key, value, errstr, errstr_size) !=
               RD_KAFKA_CONF_OK;
}

rd_kafka_conf_t *ordo_kafka_conf(const ordo_config_t *conf, char *errstr,
                                 size_t errstr_size) {
        rd_kafka_conf_t *rconf = rd_kafka_conf_new();
        pass_t p = { rconf, errstr, errstr_size, 0 };
        rd_kafka_conf_set_log_cb(rconf, log_cb);
        ordo_config_foreach(conf, pass_kafka_key, &p);
        if (p.failed) {
                rd_kafka_conf_destroy(rconf);
                return NULL;
        }
        return rconf;
}

/* Sets our defaults, then re-applies the user's kafka.* keys so that
 * explicit configuration wins (those ordo's guarantees rest on are
 * refused before: reserved_kafka_key, decision 0033). */
static rd_kafka_t *client_new(const ordo_config_t *conf, rd_kafka_type_t type,
                              const char *const *defaults,
                              ordo_rebalance_cb_t *rebalance_cb,
                              ordo_delivery_cb_t *delivery_cb, void *opaque,
                              char *errstr, size_t errstr_size) {
        rd_kafka_conf_t *rconf = rd_kafka_conf_new();
        pass_t p = { rconf, errstr, errstr_size, 0 };
        rd_kafka_t *rk;
        size_t i;

        rd_kafka_conf_set_log_cb(rconf, log_cb);
        if (rebalance_cb)
                rd_kafka_conf_set_rebalance_cb(rconf, rebalance_cb);
        if (delivery_cb)
                rd_kafka_conf_set_dr_msg_cb(rconf, delivery_cb);
        rd_kafka_conf_set_opaque(rconf, opaque);
        for (i = 0; defaults[i]; i += 2)
                if (set(rconf, defaults[i], defaults[i + 1], errstr,
                        errstr_size)) {
                        rd_kafka_conf_destroy(rconf);
                        return NULL;
                }
        ordo_config_foreach(conf, pass_kafka_key, &p);
        if (p.failed) {
                rd_kafka_conf_destroy(rconf);
                return NULL;
        }
        rk = rd_kafka_new(type, rconf, errstr, errstr_size);
        if (!rk)
                rd_kafka_conf_destroy(rconf);
        return rk;
}

rd_kafka_t *ordo_kafka_producer_new(const ordo_config_t *conf,
                                    const char *transactional_id,
                                    ordo_delivery_cb_t *delivery_cb,
                                    void *opaque, char *errstr,
                                    size_t errstr_size) {
        /* retry.backoff.ms: the broker answers AddPartitionsToTxn and
         * AddOffsetsToTxn just after a commit with CONCURRENT_TRANSACTIONS
         * while it writes the markers, and librdkafka retries after
         * retry.backoff.ms, 100 ms by default: that wait was most of every
         * transaction (bench/RESULTS.md: 126 -> 29 ms). Not lower: under
         * load, commits that come back too soon make many small
         * transactions, and 5 ms measured worse than 10 at 10k/s. */
        const char *defaults[] = { "enable.idempotence", "true", "acks", "all",
                                   "partitioner", "murmur2_random", "linger.ms",
                                   "5",
                                   /* as Kafka Streams: a transaction
                                    * left open by a killed instance
                                    * holds its partitions' readers and
                                    * its group's offsets this long
                                    * (docs/operating.md) */
                                   "transaction.timeout.ms", "10000",
                                   "message.max.bytes", "1000000",
                                   "retry.backoff.ms", "10",
                                   transactional_id ? "transactional.id" : NULL,
                                   transactional_id, NULL };
        return client_new(conf, RD_KAFKA_PRODUCER, defaults, NULL, delivery_cb,
                          opaque, errstr, errstr_size);
}

static ordo_kafka_library_t library = { "unknown", ORDO_RDKAFKA_LIBDIR, -1 };
static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void find_library(void) {
        char linked[PATH_MAX], found[PATH_MAX], *slash;
        Dl_info info;

        /* a function pointer as data: POSIX's dladdr asks for it */
        if (!dladdr((void *)(uintptr_t)rd_kafka_version, &info) ||
            !info.dli_fname || !*info.dli_fname)
                return;
        library.file = info.dli_fname;
        if (*library.linked_dir && realpath(library.linked_dir, linked) &&
            realpath(library.file, found) && (slash = strrchr(found, '/'))) {
                *slash = '\0';
                library.as_linked = !strcmp(linked, found);
        }
}

ordo_kafka_library_t ordo_kafka_library(void) {
        pthread_once(&library_once, find_library);
        return library;
}

void ordo_kafka_log_library(const char *stage) {
        ordo_kafka_library_t lib = ordo_kafka_library();
        char file[1024], dir[1024];
        ordo_log_quote(file, sizeof(file), lib.file);
        ORDO_LOG(INFO, stage,
                 "msg=starting version=%s librdkafka=%s librdkafka_file=\"%s\"",
                 ORDO_VERSION, rd_kafka_version_str(), file);
        if (!lib.as_linked)
                ORDO_LOG(WARN, stage,
                         "msg=\"librdkafka is not the one ordo was linked "
                         "against\" linked_dir=\"%s\" librdkafka_file=\"%s\"",
                         ordo_log_quote(dir, sizeof(dir), lib.linked_dir),
                         file);
}

rd_kafka_resp_err_t ordo_kafka_delivery_err(const rd_kafka_message_t *m) {
        if (m->err)
                return m->err;
        if (m->offset < 0)
                return RD_KAFKA_RESP_ERR__INCONSISTENT;
        return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int ordo_kafka_maybe_written(const rd_kafka_message_t *m) {
        return ordo_kafka_delivery_err(m) &&
               rd_kafka_message_status(m) ==
                   RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED;
}

static rd_kafka_t *consumer_new(const ordo_config_t *conf, const char *group,
                                const char *instance,
                                ordo_rebalance_cb_t *rebalance_cb, void *opaque,
                                char *errstr, size_t errstr_size) {
        const char *defaults[] = {
                "isolation.level", "read_committed", "enable.auto.commit",
                "false", "enable.auto.offset.store", "false",
                /* A group member whose next records were deleted (a
                 * retention limit) is told so (ordo_kafka_records_lost)
                 * instead of going on from the earliest left: what it
                 * decides or applies would not be the log's. */
                "auto.offset.reset", instance ? "error" : "earliest",
                "partition.assignment.strategy", "range",
                /* How long the broker holds a fetch that finds nothing.
                 * Data, and a transaction's markers moving the last
                 * stable offset, answer it at once; so the wait only
                 * bounds an idle consumer's fetches: 100 a second at 10
                 * ms, which cost an idle `ordo run`'s broker twice the
                 * CPU. A reader (restore, join, replay) waits for a
                 * partition's end, which an empty fetch brings: 10 ms. A
                 * group member learns its ends in its own time, and a
                 * stopping processor waits for them (stream.c,
                 * await_ends): 100 ms (bench/RESULTS.md session 26). */
                "fetch.wait.max.ms", instance ? "100" : "10",
                "enable.partition.eof", "true",
                /* a hot partition (a flash sale's activity) in 8 MB per
                 * fetch, not 1: a rebuild waited seconds on fetches of
                 * 1 MB; the prefetch queue still bounds the memory */
                "max.partition.fetch.bytes", "8388608",
                /* a killed member's partitions move on after 10 s,
                 * not 45 */
                "session.timeout.ms", "10000", "heartbeat.interval.ms", "1000",
                /* librdkafka stops prefetching a partition at 100,000
                 * queued messages and was slow to resume: a backlog
                 * drain sat idle for 1-4 s of 8 (bench/RESULTS.md
                 * "Pipelined loop"). The byte limit
                 * (queued.max.messages.kbytes, 64 MiB) still holds. */
                "queued.min.messages", "1000000", "group.id",
                group ? group : "ordo.unused",
                instance ? "group.instance.id" : NULL, instance, NULL
        };
        rd_kafka_t *rk =
            client_new(conf, RD_KAFKA_CONSUMER, defaults, rebalance_cb, NULL,
                       opaque, errstr, errstr_size);
        if (rk && group)
                rd_kafka_poll_set_consumer(rk);
        return rk;
}

rd_kafka_t *ordo_kafka_consumer_new(const ordo_config_t *conf,
                                    const char *group,
                                    ordo_rebalance_cb_t *rebalance_cb,
                                    void *opaque, char *errstr,
                                    size_t errstr_size) {
        return consumer_new(conf, group, NULL, rebalance_cb, opaque, errstr,
                            errstr_size);
}

#define PAUSE_MS        5000  /* a stall this long is a pause */
#define PAUSE_RECENT_MS 60000 /* ...and it bears on fences this long */

/* monotonic ms at the end of the last pause the watch saw, 0: none */
static int64_t paused_at;

static void *pause_watch(void *arg) {
        int64_t before = ordo_monotonic_ms(), now;
        (void)arg;
        for (;;) {
                usleep(100000);
                now = ordo_monotonic_ms();
                if (now - before >= PAUSE_MS)
                        __atomic_store_n(&paused_at, now, __ATOMIC_RELAXED);
                before = now;
        }
        return NULL;
}

static void pause_watch_once(void) {
        pthread_t t;
        if (!pthread_create(&t, NULL, pause_watch, NULL))
                pthread_detach(t);
}

/* Started with the first static member: a pause before it cannot bear
 * on a membership. */
static void pause_watch_start(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, pause_watch_once);
}

rd_kafka_t *ordo_kafka_member_new(const ordo_config_t *conf, const char *group,
                                  ordo_rebalance_cb_t *rebalance_cb,
                                  void *opaque, char *errstr,
                                  size_t errstr_size) {
        char instance[512];
        pause_watch_start();
        snprintf(instance, sizeof(instance), "%s.%s", group,
                 ordo_config_get(conf, "instance.id"));
        return consumer_new(conf, group, instance, rebalance_cb, opaque, errstr,
                            errstr_size);
}

ordo_fence_t ordo_kafka_fenced(int64_t fenced_ms[2]) {
        int64_t now = ordo_monotonic_ms(), paused;
        int third = fenced_ms[1] && now - fenced_ms[1] < 120000;
        fenced_ms[1] = fenced_ms[0];
        fenced_ms[0] = now;
        paused = __atomic_load_n(&paused_at, __ATOMIC_RELAXED);
        if (paused && now - paused < PAUSE_RECENT_MS)
                return ORDO_FENCE_REPLACED;
        return third ? ORDO_FENCE_TWIN : ORDO_FENCE_REJOIN;
}

void ordo_kafka_twin_error(const ordo_config_t *conf, const char *group,
                           ordo_fence_t why, char *errstr, size_t errstr_size) {
        const char *id = ordo_config_get(conf, "instance.id");
        if (why == ORDO_FENCE_REPLACED)
                snprintf(errstr, errstr_size,
                         "this process was paused (SIGSTOP? a frozen VM?) and "
                         "another one took instance.id %s (group.instance.id "
                         "%s.%s) meanwhile; that one keeps the stage and this "
                         "one stops",
                         id, group, id);
        else
                snprintf(errstr, errstr_size,
                         "another live process runs this stage with "
                         "instance.id %s (group.instance.id %s.%s): "
                         "fenced three times in 2 minutes; this one "
                         "stops. Give every instance its own -X "
                         "instance.id=N",
                         id, group, id);
}

void ordo_kafka_member_leave(rd_kafka_t *rk, int timeout_ms) {
        rd_kafka_topic_partition_list_t *a = NULL;
        int64_t deadline = ordo_monotonic_ms() + timeout_ms;
        int cnt = 1;

        /* librdkafka sends a static member's LeaveGroup on unsubscribe,
         * not on close (KIP-345): leave first, serving the revoke. */
        if (rd_kafka_unsubscribe(rk))
                return;
        while (cnt > 0 && ordo_monotonic_ms() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
                if (m)
                        rd_kafka_message_destroy(m);
                if (rd_kafka_assignment(rk, &a))
                        return;
                cnt = a->cnt;
                rd_kafka_topic_partition_list_destroy(a);
        }
}

/* Budgets in wall time: each query also waits its own timeout. */
#define RETRY_FOR_MS  30000
#define RETRY_STEP_MS 200

static volatile sig_atomic_t *queries_stop;

void ordo_kafka_queries_stop_on(volatile sig_atomic_t *flag) {
        queries_stop = flag;
}

static int queries_stopped(void) {
        return queries_stop && *queries_stop;
}

/* Errors that mean "not yet": a new topic's leader is being elected. */
static int transient(rd_kafka_resp_err_t err) {
        return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
               err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
               err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
               err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
               err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
               err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
               err == RD_KAFKA_RESP_ERR__TRANSPORT ||
               err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT;
}

/* Whether a query may be tried again: transient, within its budget, and
 * not stopped. */
static int retry_query(rd_kafka_resp_err_t err, int64_t deadline) {
        return transient(err) && ordo_monotonic_ms() < deadline &&
               !queries_stopped();
}

/* Whether a query failed because its tool was stopped (not asked, or
 * its retries cut short), not for Kafka's own reason. */
static int query_stopped(rd_kafka_resp_err_t err) {
        return (err == RD_KAFKA_RESP_ERR__INTR || transient(err)) &&
               queries_stopped();
}

/* The reason a query failed; when Kafka never answered, says where it
 * was looked for and for how long (the retries hid that). */
static void query_error(rd_kafka_t *rk, rd_kafka_resp_err_t err, char *errstr,
                        size_t errstr_size) {
        char servers[512];
        size_t size = sizeof(servers);
        if (query_stopped(err)) {
                snprintf(errstr, errstr_size,
                         "stopped by a signal before Kafka answered (%s)",
                         rd_kafka_err2str(err));
                return;
        }
        if (err != RD_KAFKA_RESP_ERR__TRANSPORT &&
            err != RD_KAFKA_RESP_ERR__TIMED_OUT) {
                snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(err));
                return;
        }
        if (rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", servers,
                              &size) != RD_KAFKA_CONF_OK)
                snprintf(servers, sizeof(servers), "?");
        snprintf(errstr, errstr_size,
                 "no answer from Kafka at %s in %d s (is it up? %s)", servers,
                 RETRY_FOR_MS / 1000, rd_kafka_err2str(err));
}

ordo_err_t ordo_kafka_watermarks(rd_kafka_t *rk, const char *topic,
                                 int32_t partition, int64_t *lo, int64_t *hi,
                                 char *errstr, size_t errstr_size) {
        rd_kafka_resp_err_t err;
        int64_t deadline = ordo_monotonic_ms() + RETRY_FOR_MS;
        while ((err = rd_kafka_query_watermark_offsets(rk, topic, partition, lo,
                                                       hi, 5000)) &&
               retry_query(err, deadline))
                usleep(RETRY_STEP_MS * 1000);
        if (err) {
                char why[700];
                query_error(rk, err, why, sizeof(why));
                snprintf(errstr, errstr_size, "watermarks of %s [%d]: %s",
                         topic, (int)partition, why);
                return query_stopped(err) ? ORDO_ERR_INTERRUPTED
                                          : ORDO_ERR_KAFKA;
        }
        return ORDO_ERR_OK;
}

/* Partition count, or -1; *err says why. */
static int partitions_once(rd_kafka_t *rk, const char *topic,
                           rd_kafka_resp_err_t *err) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt;
        int n = -1, i;

        if (queries_stopped()) { /* a tool's stop: no more questions */
                *err = RD_KAFKA_RESP_ERR__INTR;
                return -1;
        }
        rkt = rd_kafka_topic_new(rk, topic, NULL);
        *err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
        rd_kafka_topic_destroy(rkt);
        if (*err)
                return -1;
        if (md->topic_cnt != 1)
                *err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        else if (md->topics[0].err)
                *err = md->topics[0].err;
        else {
                n = md->topics[0].partition_cnt;
                /* Usable only once every partition has a leader. */
                for (i = 0; i < n; i++)
                        if (md->topics[0].partitions[i].leader < 0)
                                *err = RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
                if (*err)
                        n = -1;
        }
        rd_kafka_metadata_destroy(md);
        return n;
}

rd_kafka_t *ordo_kafka_watermark_client_new(const ordo_config_t *conf,
                                            char *errstr, size_t errstr_size) {
        rd_kafka_conf_t *c = ordo_kafka_conf(conf, errstr, errstr_size);
        rd_kafka_t *rk;
        if (!c)
                return NULL;
        /* After the user's keys: this client must see uncommitted data. */
        if (set(c, "isolation.level", "read_uncommitted", errstr,
                errstr_size) ||
            set(c, "group.id", "ordo.unused", errstr, errstr_size)) {
                rd_kafka_conf_destroy(c);
                return NULL;
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, errstr, errstr_size);
        if (!rk)
                rd_kafka_conf_destroy(c);
        return rk;
}

int ordo_kafka_partitions(rd_kafka_t *rk, const char *topic, char *errstr,
                          size_t errstr_size) {
        rd_kafka_resp_err_t err;
        int64_t deadline = ordo_monotonic_ms() + RETRY_FOR_MS;
        int n;
        while ((n = partitions_once(rk, topic, &err)) < 0 &&
               retry_query(err, deadline))
                usleep(RETRY_STEP_MS * 1000);
        if (n < 0) {
                char why[700];
                query_error(rk, err, why, sizeof(why));
                snprintf(errstr, errstr_size, "topic %s: %s", topic, why);
        }
        return n;
}

/* 1 if the cluster's metadata of every topic lists topic, 0 if it does
 * not, -1 without an answer. */
static int topic_listed(rd_kafka_t *rk, const char *topic) {
        const struct rd_kafka_metadata *md;
        int i, found = 0;
        if (queries_stopped() || rd_kafka_metadata(rk, 1, NULL, &md, 5000))
                return -1;
        for (i = 0; i < md->topic_cnt && !found; i++)
                found = !strcmp(md->topics[i].topic, topic);
        rd_kafka_metadata_destroy(md);
        return found;
}

int ordo_kafka_topic_exists(rd_kafka_t *rk, const char *topic) {
        rd_kafka_resp_err_t err;
        if (partitions_once(rk, topic, &err) >= 0)
                return 1;
        if (err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
                return topic_listed(rk, topic);
        return -1;
}

int ordo_kafka_partitions_of_existing(rd_kafka_t *rk, const char *topic,
                                      char *errstr, size_t errstr_size) {
        rd_kafka_resp_err_t err;
        int n = partitions_once(rk, topic, &err);
        if (n >= 0)
                return n;
        if (!ordo_kafka_topic_exists(rk, topic)) {
                snprintf(errstr, errstr_size, ORDO_NO_TOPIC_FMT, topic);
                return -2;
        }
        return ordo_kafka_partitions(rk, topic, errstr, errstr_size);
}

/* A topic just created has no leaders for a moment, and the metadata may
 * name a leader before that broker acts as one: its first Produce would
 * be refused with NOT_LEADER. Wait until each partition's leader answers
 * a ListOffsets request (retried while transient), so callers can use
 * the topic at once. */
static ordo_err_t wait_leaders(rd_kafka_t *rk, const char *topic, char *errstr,
                               size_t errstr_size) {
        int32_t p;
        int64_t lo, hi;
        int n = ordo_kafka_partitions(rk, topic, errstr, errstr_size);
        if (n < 0)
                return ORDO_ERR_KAFKA;
        for (p = 0; p < n; p++)
                if (ordo_kafka_watermarks(rk, topic, p, &lo, &hi, errstr,
                                          errstr_size))
                        return ORDO_ERR_KAFKA;
        return ORDO_ERR_OK;
}

/* Whether *stop (may be NULL) is set; then errstr says so. */
static int stopped_creating(volatile sig_atomic_t *stop, char *errstr,
                            size_t errstr_size) {
        if (!stop || !*stop)
                return 0;
        snprintf(errstr, errstr_size, "stopped while creating topics");
        return 1;
}

/* Marks in missing[] the deployment's topics Kafka does not have, from
 * one metadata request (asked again each second for up to 30 s, or
 * until *stop): the count, or -1 with errstr. Only those are created: a
 * client allowed to write but not to create topics (a cluster with
 * ACLs) is refused even a CreateTopics of topics that exist. */
static int missing_topics(rd_kafka_t *rk, const ordo_config_t *conf,
                          volatile sig_atomic_t *stop,
                          int missing[ORDO_TOPIC__COUNT], char *errstr,
                          size_t errstr_size) {
        const struct rd_kafka_metadata *md = NULL;
        int64_t deadline = ordo_monotonic_ms() + 30000;
        rd_kafka_resp_err_t err;
        int i, j, n = 0;

        while ((err = rd_kafka_metadata(rk, 1, NULL, &md, 1000)) &&
               !(stop && *stop) && ordo_monotonic_ms() < deadline)
                ;
        if (err) {
                if (!stopped_creating(stop, errstr, errstr_size))
                        snprintf(
                            errstr, errstr_size,
                            "creating topics: no answer from Kafka at %s "
                            "in 30s (%s)",
                            ordo_config_get(conf, "kafka.bootstrap.servers"),
                            rd_kafka_err2str(err));
                return -1;
        }
        for (i = 0; i < ORDO_TOPIC__COUNT; i++) {
                char name[256];
                ordo_topic_name(conf, (ordo_topic_t)i, name, sizeof(name));
                missing[i] = 1;
                /* one there but leaderless for a moment (just made by
                 * another process) is not missing: wait_leaders waits */
                for (j = 0; j < md->topic_cnt && missing[i]; j++)
                        missing[i] =
                            md->topics[j].err ==
                                RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                            strcmp(md->topics[j].topic, name);
                n += missing[i];
        }
        rd_kafka_metadata_destroy(md);
        return n;
}

/* Creates the n topics of nt, each said in an INFO line: one made
 * meanwhile (another process's create) is no error. */
static ordo_err_t create_topics(rd_kafka_t *rk, const ordo_config_t *conf,
                                rd_kafka_NewTopic_t **nt, size_t n,
                                volatile sig_atomic_t *stop, char *errstr,
                                size_t errstr_size) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        int64_t deadline = ordo_monotonic_ms() + 30000;
        const rd_kafka_topic_result_t **tres;
        ordo_err_t ret = ORDO_ERR_OK;
        rd_kafka_event_t *ev;
        size_t i, got;

        rd_kafka_CreateTopics(rk, nt, n, NULL, q);
        while (!(ev = rd_kafka_queue_poll(q, 200)) && !(stop && *stop) &&
               ordo_monotonic_ms() < deadline)
                ;
        if (!ev && stopped_creating(stop, errstr, errstr_size)) {
                ret = ORDO_ERR_INTERRUPTED;
        } else if (!ev) {
                snprintf(errstr, errstr_size,
                         "creating topics: no answer from Kafka at %s in 30s",
                         ordo_config_get(conf, "kafka.bootstrap.servers"));
                ret = ORDO_ERR_TIMEOUT;
        } else if (rd_kafka_event_error(ev)) {
                snprintf(errstr, errstr_size, "creating topics: %s",
                         rd_kafka_event_error_string(ev));
                ret = ORDO_ERR_KAFKA;
        } else {
                tres = rd_kafka_CreateTopics_result_topics(
                    rd_kafka_event_CreateTopics_result(ev), &got);
                for (i = 0; i < got; i++) {
                        rd_kafka_resp_err_t e =
                            rd_kafka_topic_result_error(tres[i]);
                        /* said, so that a mistyped topic.prefix shows */
                        if (!e)
                                ORDO_LOG(INFO, "kafka",
                                         "msg=\"created topic\" topic=%s",
                                         rd_kafka_topic_result_name(tres[i]));
                        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                                snprintf(errstr, errstr_size,
                                         "creating topic %s: %s",
                                         rd_kafka_topic_result_name(tres[i]),
                                         rd_kafka_err2str(e));
                                ret = ORDO_ERR_KAFKA;
                                break;
                        }
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        return ret;
}

ordo_err_t ordo_kafka_ensure_topics(const ordo_config_t *conf,
                                    volatile sig_atomic_t *stop, char *errstr,
                                    size_t errstr_size) {
        rd_kafka_t *rk;
        rd_kafka_NewTopic_t *nt[ORDO_TOPIC__COUNT];
        /* [0]: the log is the record, kept for ever: a broker's default
         * retention (7 days) would delete what restores, rebuilds and
         * reconciles read from offset 0 (an outside audit). [1]: the
         * snapshots, compacted; compaction only cleans closed segments:
         * 64 MiB rather than 1 GiB ones (docs/decisions/0005). */
        static const char *const settings[2][5] = {
                { "retention.ms", "-1", "retention.bytes", "-1", NULL },
                { "cleanup.policy", "compact", "segment.bytes", "67108864",
                  NULL },
        };
        const char *const *set;
        size_t i, k, n = 0;
        int parts = (int)ordo_config_get_int(conf, "topic.partitions");
        int missing[ORDO_TOPIC__COUNT];
        ordo_err_t ret = ORDO_ERR_OK;

        rk = ordo_kafka_producer_new(conf, NULL, NULL, NULL, errstr,
                                     errstr_size);
        if (!rk)
                return ORDO_ERR_KAFKA;
        if (missing_topics(rk, conf, stop, missing, errstr, errstr_size) < 0) {
                rd_kafka_destroy(rk);
                return stop && *stop ? ORDO_ERR_INTERRUPTED : ORDO_ERR_TIMEOUT;
        }
        for (i = 0; i < ORDO_TOPIC__COUNT; i++) {
                char name[256];
                if (!missing[i])
                        continue;
                ordo_topic_name(conf, (ordo_topic_t)i, name, sizeof(name));
                nt[n] = rd_kafka_NewTopic_new(
                    name, topics[i].single ? 1 : parts, 1, errstr, errstr_size);
                set = settings[topics[i].compact != 0];
                for (k = 0; nt[n] && set[k]; k += 2)
                        if (rd_kafka_NewTopic_set_config(nt[n], set[k],
                                                         set[k + 1])) {
                                snprintf(errstr, errstr_size,
                                         "%s: cannot set its %s", name, set[k]);
                                rd_kafka_NewTopic_destroy(nt[n]);
                                nt[n] = NULL;
                        }
                if (!nt[n]) {
                        rd_kafka_NewTopic_destroy_array(nt, n);
                        rd_kafka_destroy(rk);
                        return ORDO_ERR_CONFIG;
                }
                n++;
        }
        if (n)
                ret = create_topics(rk, conf, nt, n, stop, errstr, errstr_size);
        rd_kafka_NewTopic_destroy_array(nt, n);
        for (i = 0; !ret && i < ORDO_TOPIC__COUNT; i++) {
                char name[256];
                if (stopped_creating(stop, errstr, errstr_size)) {
                        ret = ORDO_ERR_INTERRUPTED;
                        break;
                }
                ordo_topic_name(conf, (ordo_topic_t)i, name, sizeof(name));
                ret = wait_leaders(rk, name, errstr, errstr_size);
        }
        rd_kafka_destroy(rk);
        return ret;
}

void ordo_group_name(const char *prefix, const char *stage_group, char *buf,
                     size_t size) {
        snprintf(buf, size, "%s%s", prefix, stage_group);
}

void ordo_kafka_group(const ordo_config_t *conf, const char *stage_group,
                      char *buf, size_t size) {
        ordo_group_name(ordo_config_get(conf, "group.prefix"), stage_group, buf,
                        size);
}
