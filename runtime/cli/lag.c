/*
 * ordo lag | wait: how far each stage's consumer group is behind.
 *
 * Transaction markers take offsets too, so "committed < high watermark"
 * does not mean there is anything left to read. A partition counts as
 * caught up when a read_committed probe from the committed offset meets
 * the end before any message but the Ticks a time-driven stage writes
 * itself (header ordo.autotick): those come every tick.interval.ms
 * whatever anyone sends, so waiting for them would never end. For the
 * same reason `wait` reads only up to targets (wait_pass): the ends when
 * it began, then the ends of what the processors wrote because of them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "commands.h"
#include "kafka.h"
#include "kafka_io.h"
#include "log.h"
#include "stages.h"

#define N_GROUPS ORDO_STAGES_MAX

/* One topic's partitions during a pass (read_offsets), np of them. */
typedef struct {
        int64_t *c, *hi; /* committed, stable end */
        int64_t *lo;     /* where the partition begins */
        int64_t *from;   /* where a probe starts, -1: none */
        int64_t *at;     /* where it stopped (probe) */
        int *left;       /* anything to read (probe) */
        int cap;
} part_state_t;

typedef struct {
        const char *cmd; /* "lag" or "wait", for its messages */
        const ordo_config_t *conf;
        rd_kafka_t *consumers[N_GROUPS];
        rd_kafka_t *probe;
        rd_kafka_t *watermarks; /* read_uncommitted: high watermarks */
        int only[N_GROUPS];     /* 1: this stage counts */
        part_state_t st;
        /* ordo wait: each partition's target, by input topic (wait_pass) */
        int64_t *target[ORDO_TOPIC__COUNT];
        int n_target[ORDO_TOPIC__COUNT];
        int behind_in[N_GROUPS]; /* partitions behind, by stage */
        char failed[600];        /* why the last pass failed */
} lag_t;

/* Keeps the stages named in argv[first..argc), or all when none is. */
static int select_stages(lag_t *l, int argc, char **argv, int first) {
        const ordo_stage_t *s;
        size_t g;
        int i;
        for (g = 0; g < ordo_n_stages; g++)
                l->only[g] = first >= argc;
        for (i = first; i < argc; i++) {
                if (!(s = ordo_stage_find(argv[i]))) {
                        fprintf(stderr, "ordo %s: unknown stage \"%s\" (%s)\n",
                                argv[0], argv[i], ordo_stage_names());
                        return -1;
                }
                l->only[s - ordo_stages] = 1;
        }
        return 0;
}

static void lag_close(lag_t *l) {
        size_t i;
        for (i = 0; i < ordo_n_stages; i++)
                if (l->consumers[i])
                        rd_kafka_destroy(l->consumers[i]);
        if (l->probe)
                rd_kafka_destroy(l->probe);
        if (l->watermarks)
                rd_kafka_destroy(l->watermarks);
        for (i = 0; i < ORDO_TOPIC__COUNT; i++)
                free(l->target[i]);
        free(l->st.c);
        free(l->st.lo);
        free(l->st.hi);
        free(l->st.at);
        free(l->st.from);
        free(l->st.left);
}

static int lag_open(lag_t *l, const char *cmd, const ordo_config_t *conf) {
        char group[256], errstr[512];
        size_t i;
        memset(l, 0, sizeof(*l));
        l->cmd = cmd;
        l->conf = conf;
        for (i = 0; i < ordo_n_stages; i++) {
                ordo_kafka_group(conf, ordo_stages[i].group, group,
                                 sizeof(group));
                l->consumers[i] = ordo_kafka_consumer_new(
                    conf, group, NULL, NULL, errstr, sizeof(errstr));
                if (!l->consumers[i])
                        goto fail;
        }
        l->probe = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                           sizeof(errstr));
        if (l->probe)
                l->watermarks = ordo_kafka_watermark_client_new(conf, errstr,
                                                                sizeof(errstr));
        if (l->watermarks)
                return 0;
fail:
        fprintf(stderr, "ordo %s: %s\n", l->cmd, errstr);
        lag_close(l);
        return -1;
}

static int is_autotick(const rd_kafka_message_t *m) {
        rd_kafka_headers_t *h;
        const void *v;
        size_t len;
        return !rd_kafka_message_headers(m, &h) &&
               !rd_kafka_header_get_last(h, ORDO_AUTOTICK_HEADER, &v, &len);
}

/* For each partition i of topic (np of them) with from[i] >= 0: found[i]
 * 1 when a read_committed read from from[i] meets a message before the
 * end, autoticks aside, 0 when it meets the end (the stable end: an open
 * transaction's first offset) first; at[i] the offset of the one it met
 * (found[i] 0 and at[i] -1 for the others). The partitions are read at
 * once, in one assignment. No answer within 10 s: 1 (assumed behind),
 * at[i] -1. */
static void probe(lag_t *l, const char *topic, int np, const int64_t *from,
                  int *found, int64_t *at) {
        rd_kafka_topic_partition_list_t *tp =
            rd_kafka_topic_partition_list_new(np);
        int i, open = 0, idle = 0, assigned;
        for (i = 0; i < np; i++) {
                found[i] = from[i] < 0 ? 0 : -1;
                at[i] = -1;
                if (from[i] >= 0) {
                        rd_kafka_topic_partition_list_add(tp, topic, i)
                            ->offset = from[i];
                        open++;
                }
        }
        if ((assigned = open > 0)) {
                int64_t lo, hi;
                rd_kafka_assign(l->probe, tp);
                /* A request on the probe's own client wakes its broker
                 * thread, which otherwise noticed the new partitions
                 * only at its next 1 s wakeup (librdkafka 2.0.2): each
                 * probe took a second, a pass over a deployment three. */
                rd_kafka_query_watermark_offsets(
                    l->probe, topic, tp->elems[0].partition, &lo, &hi, 5000);
        }
        rd_kafka_topic_partition_list_destroy(tp);
        while (open && idle < 100 && !ordo_stop) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(l->probe, 100);
                int32_t p;
                if (!m) {
                        idle++;
                        continue;
                }
                p = m->partition;
                if (m->rkt && !strcmp(rd_kafka_topic_name(m->rkt), topic) &&
                    p >= 0 && p < np && found[p] < 0) {
                        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                found[p] = 0;
                        else if (!m->err && !is_autotick(m))
                                found[p] = 1;
                        if (found[p] >= 0) {
                                at[p] = m->offset;
                                open--;
                        }
                }
                rd_kafka_message_destroy(m);
        }
        for (i = 0; i < np; i++)
                if (found[i] < 0)
                        found[i] = 1;
        if (assigned)
                rd_kafka_assign(l->probe, NULL);
}

/* Room in l->st for np partitions. */
static int state_room(lag_t *l, int np) {
        part_state_t *st = &l->st;
        int cap = np > 0 ? np : 1;
        if (cap <= st->cap)
                return 0;
        free(st->c);
        free(st->lo);
        free(st->hi);
        free(st->at);
        free(st->from);
        free(st->left);
        st->c = malloc((size_t)cap * sizeof(*st->c));
        st->lo = malloc((size_t)cap * sizeof(*st->lo));
        st->hi = malloc((size_t)cap * sizeof(*st->hi));
        st->at = malloc((size_t)cap * sizeof(*st->at));
        st->from = malloc((size_t)cap * sizeof(*st->from));
        st->left = malloc((size_t)cap * sizeof(*st->left));
        st->cap = st->c && st->lo && st->hi && st->at && st->from && st->left
                      ? cap
                      : 0;
        return st->cap ? 0 : -1;
}

#define PASS_FAILED   -1
#define PASS_NOT_NOW  -2 /* a read Kafka may answer next time */
#define PASS_NO_TOPIC -3 /* Kafka has no such topic: the prefix? */

/* Stage g's view of its input topic: the number of partitions, and
 * l->st's c (committed; none: a stage starts at 0), lo and hi (the
 * partition's beginning and stable end) of each. A PASS_ code, l->failed
 * saying why, when Kafka did not tell. */
static int read_offsets(lag_t *l, size_t g, const char *topic) {
        rd_kafka_topic_partition_list_t *tp;
        rd_kafka_resp_err_t err;
        char errstr[512];
        int np, i;

        if (ordo_stop) {
                snprintf(l->failed, sizeof(l->failed), "stopped by a signal");
                return PASS_FAILED;
        }
        np = ordo_kafka_partitions_of_existing(l->consumers[g], topic, errstr,
                                               sizeof(errstr));
        if (np < 0) {
                snprintf(l->failed, sizeof(l->failed), "%s", errstr);
                return np == -2 ? PASS_NO_TOPIC : PASS_FAILED;
        }
        tp = rd_kafka_topic_partition_list_new(np);
        for (i = 0; i < np; i++)
                rd_kafka_topic_partition_list_add(tp, topic, i);
        /* A broker just started may still be loading the group's
         * offsets. */
        if ((err = rd_kafka_committed(l->consumers[g], tp, 10000))) {
                snprintf(l->failed, sizeof(l->failed),
                         "cannot read committed offsets of %s: %s%s", topic,
                         rd_kafka_err2str(err),
                         err == RD_KAFKA_RESP_ERR__TIMED_OUT
                             ? " (a transaction left open by a stage process "
                               "that stopped holds them until the broker "
                               "aborts it, within transaction.timeout.ms)"
                             : "");
                rd_kafka_topic_partition_list_destroy(tp);
                return PASS_NOT_NOW;
        }
        if (state_room(l, np)) {
                rd_kafka_topic_partition_list_destroy(tp);
                snprintf(l->failed, sizeof(l->failed), "out of memory");
                return PASS_FAILED;
        }
        for (i = 0; i < np; i++) {
                if (ordo_kafka_watermarks(l->consumers[g], topic, i,
                                          &l->st.lo[i], &l->st.hi[i], errstr,
                                          sizeof(errstr))) {
                        rd_kafka_topic_partition_list_destroy(tp);
                        snprintf(l->failed, sizeof(l->failed), "%s", errstr);
                        return PASS_NOT_NOW;
                }
                l->st.c[i] = tp->elems[i].offset < 0 ? 0 : tp->elems[i].offset;
        }
        rd_kafka_topic_partition_list_destroy(tp);
        return np;
}

/* One pass over every group; prints rows when out is set. Returns the
 * number of partitions with something left to read, or a PASS_ code with
 * l->failed saying why. */
static int lag_pass(lag_t *l, FILE *out) {
        int behind = 0, t, i;
        char topic[256];
        size_t g;

        if (out)
                fprintf(out, "%-15s %-28s %4s %12s %12s %8s\n", "stage",
                        "topic", "part", "committed", "end", "lag");
        for (g = 0; g < ordo_n_stages; g++) {
                const ordo_stage_t *s = &ordo_stages[g];
                if (!l->only[g])
                        continue;
                for (t = 0; t < s->n_inputs; t++) {
                        int np;
                        ordo_topic_name(l->conf, s->inputs[t], topic,
                                        sizeof(topic));
                        if ((np = read_offsets(l, g, topic)) < 0)
                                return np;
                        for (i = 0; i < np; i++)
                                l->st.from[i] =
                                    l->st.c[i] < l->st.hi[i] ? l->st.c[i] : -1;
                        probe(l, topic, np, l->st.from, l->st.left, l->st.at);
                        for (i = 0; i < np; i++) {
                                /* records it needs were deleted: the
                                 * stage refuses to go on, never caught
                                 * up (the probe reads from the start) */
                                int lost = l->st.c[i] < l->st.lo[i];
                                long long lag = l->st.hi[i] - l->st.c[i];
                                char why[64] = " (caught up)";
                                if (lost)
                                        snprintf(why, sizeof(why),
                                                 " (records lost: the log "
                                                 "begins at %lld)",
                                                 (long long)l->st.lo[i]);
                                else if (l->st.left[i])
                                        why[0] = '\0';
                                /* behind a caught-up group are only
                                 * markers and its own Ticks: 0 */
                                if (!lost && !l->st.left[i])
                                        lag = 0;
                                behind += l->st.left[i] || lost;
                                if (out)
                                        fprintf(out,
                                                "%-15s %-28s %4d %12lld "
                                                "%12lld %8lld%s\n",
                                                s->group, topic, i,
                                                (long long)l->st.c[i],
                                                (long long)l->st.hi[i], lag,
                                                why);
                        }
                }
        }
        return behind;
}

/* ---- ordo wait: what was sent before it, and what that caused -------- */

/* The longest chain of consequences of one command through the
 * processors, in topics written: a PlaceOrder's OpenOrder
 * (order-commands), refused as DUPLICATE_ORDER_ID, sends ReleaseStock
 * (activity-commands), whose StockReleased (activity-events) the
 * projections read. */
#define CONSEQUENCE_HOPS 3

#define WAIT_NOTE_MS 5000 /* a wait still behind says so this often */

/* Partition i's high watermark, everything written to it so far: what
 * is not in a transaction committed yet too, which the stable end leaves
 * out (a committed batch's outputs wait for their markers; the order
 * stage's Ticks hold it at a transaction's first offset). A PASS_ code. */
static int written_end(lag_t *l, const char *topic, int i, int64_t *end) {
        char errstr[512];
        int64_t lo;
        if (!ordo_kafka_watermarks(l->watermarks, topic, i, &lo, end, errstr,
                                   sizeof(errstr)))
                return 0;
        snprintf(l->failed, sizeof(l->failed), "%s", errstr);
        return PASS_NOT_NOW;
}

/* Room for the targets of topic (named name) of np partitions; a
 * partition seen for the first time gets its end now as its target. A
 * PASS_ code. */
static int targets_room(lag_t *l, ordo_topic_t topic, const char *name,
                        int np) {
        int64_t *t;
        int i, err;
        if (np <= l->n_target[topic])
                return 0;
        if (!(t = realloc(l->target[topic], (size_t)np * sizeof(*t)))) {
                snprintf(l->failed, sizeof(l->failed), "out of memory");
                return PASS_FAILED;
        }
        l->target[topic] = t;
        for (i = l->n_target[topic]; i < np; i++)
                if ((err = written_end(l, name, i, &t[i])))
                        return err;
        l->n_target[topic] = np;
        return 0;
}

/* One pass of `ordo wait` over the stages' groups: the number of
 * partitions with something left to read before its target (or records
 * lost), or a PASS_ code with l->failed saying why. A partition's target
 * is where its end was when the wait first read it, until raise_targets
 * moves it on. Past the committed offset, autoticks and transaction
 * markers are not waited for, nor what lies past the target: under a
 * steady stream of commands there always is some. A transaction still
 * open below the target is (the probe's end stops at it). */
static int wait_pass(lag_t *l) {
        char topic[256];
        int behind = 0, np, t, i, err;
        size_t g;

        memset(l->behind_in, 0, sizeof(l->behind_in));
        for (g = 0; g < ordo_n_stages; g++) {
                const ordo_stage_t *s = &ordo_stages[g];
                if (!l->only[g])
                        continue;
                for (t = 0; t < s->n_inputs; t++) {
                        const int64_t *target;
                        ordo_topic_name(l->conf, s->inputs[t], topic,
                                        sizeof(topic));
                        if ((np = read_offsets(l, g, topic)) < 0)
                                return np;
                        if ((err = targets_room(l, s->inputs[t], topic, np)))
                                return err;
                        target = l->target[s->inputs[t]];
                        for (i = 0; i < np; i++)
                                l->st.from[i] =
                                    l->st.c[i] < target[i] ? l->st.c[i] : -1;
                        probe(l, topic, np, l->st.from, l->st.left, l->st.at);
                        /* at: the message or the end the probe met */
                        for (i = 0; i < np; i++)
                                l->behind_in[g] += l->st.c[i] < l->st.lo[i] ||
                                                   (l->st.from[i] >= 0 &&
                                                    l->st.at[i] < target[i]);
                }
                behind += l->behind_in[g];
        }
        return behind;
}

/* "ordo wait: <lead>N partition(s) still behind after T s: activity 6,
 * order 2 (see `ordo lag`)", of the last pass. */
static void say_behind(const lag_t *l, const char *lead, int behind,
                       int64_t elapsed_ms) {
        const char *sep = ": ";
        size_t g;
        fprintf(stderr, "ordo wait: %s%d partition(s) still behind after %llds",
                lead, behind, (long long)(elapsed_ms / 1000));
        for (g = 0; g < ordo_n_stages; g++)
                if (l->behind_in[g]) {
                        fprintf(stderr, "%s%s %d", sep, ordo_stages[g].name,
                                l->behind_in[g]);
                        sep = ", ";
                }
        fprintf(stderr, " (see `ordo lag`)\n");
}

/* After a pass that found every stage at its targets: the topics that
 * the processors waited for write to, and that a stage waited for reads,
 * get their ends now as targets. Whatever those processors wrote because
 * of what they had read is below them (a transaction carries a batch's
 * input offsets with its outputs). Returns how many targets moved, or a
 * PASS_ code. */
static int raise_targets(lag_t *l) {
        int raised = 0, done[ORDO_TOPIC__COUNT] = { 0 }, o, i, err;
        char topic[256];
        int64_t end;
        size_t g;

        for (g = 0; g < ordo_n_stages; g++) {
                const ordo_processor_def_t *def = ordo_stages[g].processor;
                ordo_topic_t outs[2];
                if (!l->only[g] || !def)
                        continue;
                outs[0] = def->events;
                outs[1] = def->outbound;
                for (o = 0; o < 2; o++) {
                        ordo_topic_t out = outs[o];
                        if (out == ORDO_TOPIC__COUNT || done[out] ||
                            !l->n_target[out])
                                continue;
                        done[out] = 1;
                        ordo_topic_name(l->conf, out, topic, sizeof(topic));
                        for (i = 0; i < l->n_target[out]; i++) {
                                if ((err = written_end(l, topic, i, &end)))
                                        return err;
                                if (end > l->target[out][i]) {
                                        l->target[out][i] = end;
                                        raised++;
                                }
                        }
                }
        }
        return raised;
}

#define DEAD_SCAN_MAX 100000 /* dead letters read per `ordo lag`, at most */

/* A header's value, or "?" when it is missing. */
static const char *header(const rd_kafka_message_t *m, const char *name,
                          int *len) {
        size_t n;
        const char *v = ordo_kafka_header(m, name, &n);
        *len = v ? (int)n : 1;
        return v ? v : "?";
}

/* "project.mongo: order-events [3] offset 17: <why> (dead-letters offset
 * 5)": the event the store refused, where to find it in its own topic. */
static void describe_parked(const rd_kafka_message_t *dead, const void *stage,
                            size_t stage_len, char *out, size_t out_size) {
        int tl, pl, ol, wl;
        const char *topic = header(dead, "ordo.source.topic", &tl);
        const char *part = header(dead, "ordo.source.partition", &pl);
        const char *off = header(dead, "ordo.source.offset", &ol);
        const char *why = header(dead, "ordo.error", &wl);

        snprintf(out, out_size,
                 "%.*s: %.*s [%.*s] offset %.*s: %.*s (dead-letters offset "
                 "%lld)",
                 (int)stage_len, (const char *)stage, tl, topic, pl, part, ol,
                 off, wl, why, (long long)dead->offset);
}

#define DEAD_STAGES 8 /* processors named apart; the rest as "other" */

typedef struct {
        int64_t n_proc, n_foreign, n_mongo, n_redis, seen;
        struct {
                char name[32]; /* "" for letters written before names */
                int64_t n;
        } proc[DEAD_STAGES];
        int n_procs;
        char last[512];
} dead_count_t;

/* A processor's letter, counted under its stage's name (a header anyone
 * can write: printable bytes only). */
static void count_proc(dead_count_t *c, const void *name, size_t len) {
        char shown[sizeof(c->proc[0].name)];
        size_t k;
        int i;
        c->n_proc++;
        if (len >= sizeof(shown))
                len = sizeof(shown) - 1;
        for (k = 0; k < len; k++) {
                char ch = ((const char *)name)[k];
                shown[k] = ch > ' ' && ch < 0x7f ? ch : '?';
        }
        shown[len] = '\0';
        for (i = 0; i < c->n_procs; i++)
                if (!strcmp(c->proc[i].name, shown))
                        break;
        if (i == DEAD_STAGES) { /* full: the last slot counts the rest */
                i--;
                snprintf(c->proc[i].name, sizeof(shown), "other");
        } else if (i == c->n_procs) {
                c->n_procs++;
                snprintf(c->proc[i].name, sizeof(shown), "%s", shown);
        }
        c->proc[i].n++;
}

static void count_dead(const rd_kafka_message_t *m, void *arg) {
        dead_count_t *c = arg;
        const void *v;
        size_t len;
        const void *kind;
        size_t kind_len;
        c->seen++;
        /* a processor's (named since session 19, none before) */
        if (!(v = ordo_kafka_header(m, "ordo.stage", &len)) || len < 8 ||
            memcmp(v, "project.", 8)) {
                count_proc(c, v, v ? len : 0);
                return;
        }
        /* A projection's letter is an event it parked unless its kind
         * says otherwise (letters written before ordo.kind: parked). */
        kind = ordo_kafka_header(m, "ordo.kind", &kind_len);
        if (kind && !(kind_len == 13 && !memcmp(kind, "store_refused", 13))) {
                c->n_foreign++;
                return;
        }
        if (len == 13 && !memcmp(v, "project.mongo", 13))
                c->n_mongo++;
        else
                c->n_redis++;
        describe_parked(m, v, len, c->last, sizeof(c->last));
}

/* The dead-letters topic, counted by the stage that wrote them (header
 * ordo.stage: project.mongo, project.redis or a processor's name), with
 * the projections' last reason: an event a store refused for good is
 * parked there and no longer shows as lag (operating.md). Each partition
 * is read to its stable end, the shared way (kafka_io.h): a slow broker
 * makes it wait, not count short; a partition it cannot read is named,
 * and the count marked "+". -1 if Kafka could not be asked for all of it
 * (not for the scan's bound). */
static int dead_letters(lag_t *l, FILE *out) {
        const ordo_stable_end_opts_t o = { "lag", 0, 10000, &ordo_stop };
        char topic[256], errstr[512];
        dead_count_t c;
        int64_t lo, end;
        int np, i, partial = 0, failed = 0;

        memset(&c, 0, sizeof(c));
        ordo_topic_name(l->conf, ORDO_TOPIC_DEAD_LETTERS, topic, sizeof(topic));
        np = ordo_kafka_partitions_of_existing(l->probe, topic, errstr,
                                               sizeof(errstr));
        if (np < 0) {
                fprintf(stderr, "ordo %s: dead letters: %s\n", l->cmd, errstr);
                partial = failed = 1;
        }
        for (i = 0; i < np; i++) {
                if (c.seen >= DEAD_SCAN_MAX) { /* the scan's bound */
                        partial = 1;
                        break;
                }
                if (ordo_kafka_stable_end(l->probe, l->watermarks, topic, i, &o,
                                          &lo, &end, errstr, sizeof(errstr))) {
                        fprintf(stderr, "ordo %s: dead letters: %s\n", l->cmd,
                                errstr);
                        partial = failed = 1;
                        continue;
                }
                if (end - lo > DEAD_SCAN_MAX - c.seen) {
                        /* cut short: markers take offsets too, so fewer
                         * letters than the bound may come back */
                        end = lo + (DEAD_SCAN_MAX - c.seen);
                        partial = 1;
                }
                if (end > lo &&
                    ordo_kafka_read_range(l->probe, topic, i, lo, end, "lag",
                                          &ordo_stop, count_dead, &c))
                        partial = failed = 1; /* stopped */
        }
        fprintf(out, "dead letters: %lld%s (processors %lld", (long long)c.seen,
                partial ? "+" : "", (long long)c.n_proc);
        for (i = 0; i < c.n_procs; i++)
                fprintf(out, "%s%s %lld", i ? ", " : ": ",
                        *c.proc[i].name ? c.proc[i].name : "unnamed",
                        (long long)c.proc[i].n);
        fprintf(out,
                "; foreign at the projections %lld; parked by project.mongo "
                "%lld, project.redis %lld)\n",
                (long long)c.n_foreign, (long long)c.n_mongo,
                (long long)c.n_redis);
        if (*c.last)
                fprintf(out, "last parked: %s (see operating.md)\n", c.last);
        return failed ? -1 : 0;
}

int ordo_cmd_lag(ordo_config_t *conf, int argc, char **argv) {
        lag_t l;
        int behind, dead_failed = 0;
        if (ordo_wants_help(argc, argv)) {
                printf("\nPrints, for each stage's consumer group (all six, "
                       "or the STAGEs named:\nactivity order referral "
                       "commission mongo redis) and input partition, the\n"
                       "committed offset, the end of the partition, the "
                       "lag and whether anything is\nleft to read (0 and "
                       "\"(caught up)\" where only transaction markers and "
                       "the\norder stage's own Ticks are left); then the "
                       "dead letters by the stage that\nwrote them, with the "
                       "last event a projection parked because its store\n"
                       "refused it. Exit status: 0 whatever the lag, 1 if "
                       "Kafka could not be asked\n(for the lag, or for part "
                       "of the dead letters: their count then ends in\n"
                       "\"+\"), 2 on a usage error (a stage's input topic "
                       "Kafka does not have, too:\nthe prefix?).\n");
                return 0;
        }
        if (lag_open(&l, "lag", conf))
                return 1;
        if (select_stages(&l, argc, argv, 1)) {
                lag_close(&l);
                return 2;
        }
        behind = lag_pass(&l, stdout);
        if (behind >= 0)
                dead_failed = dead_letters(&l, stdout);
        else
                fprintf(stderr, "ordo lag: %s\n", l.failed);
        lag_close(&l);
        if (behind < 0)
                return behind == PASS_NO_TOPIC ? 2 : 1;
        printf("partitions behind: %d\n", behind);
        return dead_failed ? 1 : 0;
}

/* The message of a wait that Kafka kept from ending in time. */
static char overdue[160];

/* A pass can block for Kafka's own retries (about 30 s with no broker);
 * --timeout still ends the wait: the alarm goes off a second after it. */
static void on_overdue(int sig) {
        ssize_t w = write(2, overdue, strlen(overdue));
        (void)sig;
        (void)w;
        _exit(1);
}

/* When the alarm goes off: a second past the loop's own check, for the
 * pass that may follow it, and 5 s at least, so that --timeout 0 can
 * connect and confirm a caught-up deployment; capped at about three
 * years. */
static unsigned overdue_after(int64_t timeout_s) {
        if (timeout_s >= 100000000)
                return 100000000;
        return timeout_s + 1 < 5 ? 5 : (unsigned)timeout_s + 1;
}

int ordo_cmd_wait(ordo_config_t *conf, int argc, char **argv) {
        lag_t l;
        int64_t timeout_s = 120;
        /* whole seconds of time() gave up to a second early */
        int64_t start = ordo_monotonic_ms(), timeout_ms, now, noted = start;
        int behind, raises = 0, i, n_stages = 1;

        if (ordo_wants_help(argc, argv)) {
                printf("\n--timeout SECONDS   give up after this long "
                       "(default 120); exit 1. A pass that\n"
                       "                    Kafka holds (slow or "
                       "unreachable) is cut a second later,\n"
                       "                    5 s after the start at the "
                       "earliest\n\nReturns 0 once every "
                       "stage's group (all six, or the STAGEs named:\n"
                       "activity order referral commission mongo redis) has "
                       "read everything that was\nin its input topics when "
                       "the wait began, and what the processors among "
                       "them\nwrote because of it (an accepted order's "
                       "OpenOrder, the events the projections\nread...), "
                       "also while commands keep coming. Those stages must "
                       "be running.\nThe Ticks the order stage writes itself "
                       "(tick.interval.ms) are not waited for,\nand a "
                       "stage's topics that do not exist yet are (stages "
                       "make theirs as they\nstart). Every 5 s while "
                       "something is left, stderr says how many partitions "
                       "of\nwhich stages.\nExit status: 0 "
                       "caught up, 1 not within the timeout or Kafka failed, "
                       "2 on a\nusage error.\n");
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--timeout")) {
                        if (ordo_option_count(argc, argv, &i, "wait", "seconds",
                                              &timeout_s))
                                return 2;
                } else if (argv[i][0] == '-') {
                        fprintf(stderr, "ordo wait: unknown option %s\n",
                                argv[i]);
                        return 2;
                } else
                        argv[n_stages++] = argv[i];
        }
        snprintf(overdue, sizeof(overdue),
                 "ordo wait: gave up after %llds (--timeout %lld), in the "
                 "middle of a pass over the groups (Kafka slow or "
                 "unreachable; see `ordo lag`)\n",
                 (long long)overdue_after(timeout_s), (long long)timeout_s);
        signal(SIGALRM, on_overdue);
        alarm(overdue_after(timeout_s));
        if (lag_open(&l, "wait", conf))
                return 1;
        if (select_stages(&l, n_stages, argv, 1)) {
                alarm(0);
                lag_close(&l);
                return 2;
        }
        /* a timeout past 3 years is none (and * 1000 stays in range) */
        timeout_ms = (timeout_s < 100000000 ? timeout_s : 100000000) * 1000;
        for (;;) {
                behind = wait_pass(&l);
                /* every stage at its targets: on to their consequences,
                 * unless nothing was written since (or the longest chain
                 * of them is covered) */
                if (behind == 0 && raises < CONSEQUENCE_HOPS &&
                    (behind = raise_targets(&l)) > 0) {
                        raises++;
                        continue;
                }
                /* a missing topic too: stages starting make theirs */
                if ((behind == PASS_NOT_NOW || behind == PASS_NO_TOPIC) &&
                    !ordo_stop && ordo_monotonic_ms() - start < timeout_ms) {
                        usleep(500000); /* until the timeout */
                        continue;
                }
                if (behind < 0) {
                        alarm(0); /* said; closing may take a while */
                        fprintf(stderr, "ordo wait: %s\n", l.failed);
                        lag_close(&l);
                        return 1;
                }
                if (behind == 0)
                        break;
                now = ordo_monotonic_ms();
                if (ordo_stop || now - start >= timeout_ms) {
                        char lead[64] = "stopped by a signal; ";
                        if (!ordo_stop)
                                snprintf(lead, sizeof(lead),
                                         "gave up (--timeout %lld): ",
                                         (long long)timeout_s);
                        say_behind(&l, lead, behind, now - start);
                        alarm(0); /* said; closing may take a while */
                        lag_close(&l);
                        return 1;
                }
                /* a long wait says where it is */
                if (now - noted >= WAIT_NOTE_MS) {
                        say_behind(&l, "", behind, now - start);
                        noted = now;
                }
                usleep(200000);
        }
        alarm(0); /* closing the clients may take a while */
        lag_close(&l);
        printf("caught up in %llds\n",
               (long long)((ordo_monotonic_ms() - start) / 1000));
        return 0;
}
