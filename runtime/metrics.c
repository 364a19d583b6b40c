#include "metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "clock.h"
#include "kafka.h"
#include "log.h"

/* ---- the writer ---- */

/* Label values escape \, " and newline; HELP text \ and newline. */
static void put_escaped(FILE *f, const char *s, int quote) {
        for (; *s; s++) {
                if (*s == '\\')
                        fputs("\\\\", f);
                else if (*s == '\n')
                        fputs("\\n", f);
                else if (*s == '"' && quote)
                        fputs("\\\"", f);
                else
                        fputc(*s, f);
        }
}

void ordo_prom_family(FILE *f, const char *name, const char *type,
                      const char *help) {
        fprintf(f, "# HELP %s ", name);
        put_escaped(f, help, 0);
        fprintf(f, "\n# TYPE %s %s\n", name, type);
}

static void put_labels(FILE *f, const char *const *labels, const char *le) {
        int first = 1;
        if ((!labels || !labels[0]) && !le)
                return;
        fputc('{', f);
        for (; labels && labels[0] && labels[1]; labels += 2) {
                fprintf(f, "%s%s=\"", first ? "" : ",", labels[0]);
                put_escaped(f, labels[1], 1);
                fputc('"', f);
                first = 0;
        }
        if (le)
                fprintf(f, "%sle=\"%s\"", first ? "" : ",", le);
        fputc('}', f);
}

/* Integers print without an exponent; the rest with full precision (a
 * histogram's _sum grows large, and a rate of it must still move), and
 * NaN and infinities as the text format spells them. */
static void put_value(FILE *f, double v) {
        if (isnan(v))
                fputs(" NaN\n", f);
        else if (isinf(v))
                fputs(v > 0 ? " +Inf\n" : " -Inf\n", f);
        else if (v < 9e15 && v > -9e15 && v == (double)(int64_t)v)
                fprintf(f, " %lld\n", (long long)v);
        else
                fprintf(f, " %.17g\n", v);
}

void ordo_prom_sample(FILE *f, const char *name, const char *const *labels,
                      double value) {
        fputs(name, f);
        put_labels(f, labels, NULL);
        put_value(f, value);
}

void ordo_prom_single(FILE *f, const char *name, const char *type,
                      const char *help, const char *const *labels,
                      double value) {
        ordo_prom_family(f, name, type, help);
        ordo_prom_sample(f, name, labels, value);
}

void ordo_prom_histogram(FILE *f, const char *name, const char *const *labels,
                         const double *bounds, const uint64_t *counts, size_t n,
                         double sum) {
        uint64_t cum = 0;
        char le[32];
        size_t i;
        for (i = 0; i <= n; i++) {
                cum += counts[i];
                if (i < n)
                        snprintf(le, sizeof(le), "%g", bounds[i]);
                else
                        snprintf(le, sizeof(le), "+Inf");
                fprintf(f, "%s_bucket", name);
                put_labels(f, labels, le);
                put_value(f, (double)cum);
        }
        fprintf(f, "%s_sum", name);
        put_labels(f, labels, NULL);
        put_value(f, sum);
        fprintf(f, "%s_count", name);
        put_labels(f, labels, NULL);
        put_value(f, (double)cum);
}

static long open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        long n = 0;
        if (!d)
                return -1;
        while ((e = readdir(d)))
                if (e->d_name[0] != '.')
                        n++;
        closedir(d);
        return n - 1; /* the directory's own descriptor */
}

static double resident_bytes(void) {
        FILE *f = fopen("/proc/self/statm", "r");
        long pages = 0, rss = 0;
        if (!f)
                return 0;
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
                rss = 0;
        fclose(f);
        return (double)rss * (double)sysconf(_SC_PAGESIZE);
}

void ordo_prom_process(FILE *f) {
        struct rusage ru;
        const char *file = ordo_kafka_library().file;
        const char *build[] = { "version",
                                ORDO_VERSION,
                                "librdkafka",
                                rd_kafka_version_str(),
                                "librdkafka_file",
                                file,
                                NULL };
        double cpu = 0;
        if (!getrusage(RUSAGE_SELF, &ru))
                cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                      ((double)ru.ru_utime.tv_usec +
                       (double)ru.ru_stime.tv_usec) /
                          1e6;
        ordo_prom_single(f, "ordo_build_info", "gauge",
                         "Always 1; the labels name the build.", build, 1);
        ordo_prom_single(f, "process_cpu_seconds_total", "counter",
                         "User and system CPU time of the process, seconds.",
                         NULL, cpu);
        ordo_prom_single(f, "process_resident_memory_bytes", "gauge",
                         "Resident set size, bytes.", NULL, resident_bytes());
        ordo_prom_single(f, "process_open_fds", "gauge",
                         "Open file descriptors.", NULL, (double)open_fds());
}

/* ---- the registry ---- */

typedef enum { COUNTER, GAUGE, HISTOGRAM } kind_t;

#define MAX_LABELS 4

/* Seconds, for latencies from a millisecond to a minute. */
static const double latency_s[] = { 0.001, 0.0025, 0.005, 0.01, 0.025,
                                    0.05,  0.1,    0.25,  0.5,  1,
                                    2.5,   5,      10,    30,   60 };
/* Seconds, for restores: a partition restores in ms to many minutes. */
static const double restore_s[] = { 0.01, 0.05, 0.1, 0.5, 1,   2.5,
                                    5,    10,   30,  60,  300, 900 };
#define N_OF(a) (sizeof(a) / sizeof(a[0]))

/* The families and their names: docs/operating.md documents each. */
enum {
        F_DECISIONS,
        F_DECISION_SECONDS,
        F_LAG,
        F_TXN_SECONDS,
        F_TXN_END_SECONDS,
        F_ABORTS,
        F_DEAD_LETTERS,
        F_RESTORE_SECONDS,
        F_PROJECTION_LAG,
        F_STORE_UP,
        F_STATE_BYTES,
        F__COUNT
};

static const struct {
        const char *name;
        kind_t kind;
        const char *help;
        const char *labels[MAX_LABELS + 1];
        const double *bounds;
        size_t n_bounds;
} families[F__COUNT] = {
        [F_DECISIONS] = { "ordo_decisions_total",
                          COUNTER,
                          "Commands decided by a processor, by command type, "
                          "result (accepted, rejected, ignored) and rejection "
                          "reason.",
                          { "stage", "command", "result", "reason" },
                          NULL,
                          0 },
        [F_DECISION_SECONDS] = { "ordo_decision_latency_seconds",
                                 HISTOGRAM,
                                 "From a command's ts_ms (the gateway's "
                                 "stamp) to its decision by the processor.",
                                 { "stage" },
                                 latency_s,
                                 N_OF(latency_s) },
        [F_LAG] = { "ordo_consumer_lag",
                    GAUGE,
                    "Messages of an assigned partition the stage has not "
                    "consumed yet (transaction markers discounted).",
                    { "stage", "topic", "partition" },
                    NULL,
                    0 },
        [F_TXN_SECONDS] = { "ordo_transaction_duration_seconds",
                            HISTOGRAM,
                            "Committed Kafka transactions of a processor, "
                            "begin to commit.",
                            { "stage" },
                            latency_s,
                            N_OF(latency_s) },
        [F_TXN_END_SECONDS] = { "ordo_transaction_end_seconds",
                                HISTOGRAM,
                                "The end of committed Kafka transactions, "
                                "by step: offsets (into the transaction), "
                                "deliveries (the produce acknowledgements), "
                                "commit.",
                                { "stage", "step" },
                                latency_s,
                                N_OF(latency_s) },
        [F_ABORTS] = { "ordo_transactions_aborted_total",
                       COUNTER,
                       "Kafka transactions a processor aborted (the batch is "
                       "decided again).",
                       { "stage" },
                       NULL,
                       0 },
        [F_DEAD_LETTERS] = { "ordo_dead_letters_total",
                             COUNTER,
                             "Input messages sent to dead-letters, by "
                             "reason class.",
                             { "stage", "reason" },
                             NULL,
                             0 },
        [F_RESTORE_SECONDS] = { "ordo_restore_duration_seconds",
                                HISTOGRAM,
                                "Restores of one partition's state on "
                                "assignment or after an abort.",
                                { "stage" },
                                restore_s,
                                N_OF(restore_s) },
        [F_PROJECTION_LAG] = { "ordo_projection_event_lag_seconds",
                               HISTOGRAM,
                               "From an event's ts_ms to the moment a "
                               "projection applied it.",
                               { "store" },
                               latency_s,
                               N_OF(latency_s) },
        [F_STORE_UP] = { "ordo_store_up",
                         GAUGE,
                         "A projection's read-model store: 1 reachable, 0 "
                         "unavailable (the projection waits and retries).",
                         { "stage" },
                         NULL,
                         0 },
        [F_STATE_BYTES] = { "ordo_state_bytes",
                            GAUGE,
                            "Memory held by a processor's state, by the "
                            "rules' own count: every partition it keeps, "
                            "and the commission join's bindings.",
                            { "stage" },
                            NULL,
                            0 },
};

typedef struct series_s {
        char *values[MAX_LABELS];
        double value;
        uint64_t *counts; /* histograms: n_bounds + 1 */
        double sum;
        struct series_s *next;
} series_t;

#define MAX_STAGES 16
#define STALL_MS   30000

typedef enum { ST_RUNNING, ST_STOPPED, ST_FAILED } stage_state_t;

typedef struct {
        char name[32];
        stage_state_t state;
        ordo_err_t err;
        int assigned;       /* partitions, at the last poll; -1: none yet */
        int64_t last_poll;  /* monotonic ms; 0: never */
        int64_t in_group;   /* monotonic ms last found a member; 0: never */
        int store_down;     /* a projection waiting for its store */
        int refilling;      /* ... reading its inputs again, not caught up */
        int restoring;      /* a processor restoring assigned partitions */
        int64_t store_call; /* monotonic ms a store call began; 0: none */
        /* The consumer and where it stood in each partition at its last
         * poll (NULL: none, or given up): the lag of a stage held in a
         * store call, which cannot poll (lag_while_held). */
        rd_kafka_t *rk;
        rd_kafka_topic_partition_list_t *stood;
} health_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static series_t *series[F__COUNT];
static health_t stages[MAX_STAGES];
static int n_stages;

static size_t n_labels(int fam) {
        size_t n = 0;
        while (n < MAX_LABELS && families[fam].labels[n])
                n++;
        return n;
}

/* The series with these label values, created on first use; NULL only
 * when out of memory (the update is then dropped). Call locked. */
static series_t *find(int fam, const char *const *values) {
        size_t n = n_labels(fam), i;
        series_t *s;
        for (s = series[fam]; s; s = s->next) {
                for (i = 0; i < n && !strcmp(s->values[i], values[i]); i++)
                        ;
                if (i == n)
                        return s;
        }
        if (!(s = calloc(1, sizeof(*s))))
                return NULL;
        for (i = 0; i < n; i++)
                if (!(s->values[i] = strdup(values[i])))
                        goto fail;
        if (families[fam].kind == HISTOGRAM &&
            !(s->counts =
                  calloc(families[fam].n_bounds + 1, sizeof(*s->counts))))
                goto fail;
        s->next = series[fam];
        series[fam] = s;
        return s;
fail:
        for (i = 0; i < n; i++)
                free(s->values[i]);
        free(s);
        return NULL;
}

static void add(int fam, const char *const *values, double v) {
        series_t *s;
        pthread_mutex_lock(&lock);
        if ((s = find(fam, values)))
                s->value += v;
        pthread_mutex_unlock(&lock);
}

static void observe(int fam, const char *const *values, double v) {
        series_t *s;
        size_t i;
        pthread_mutex_lock(&lock);
        if ((s = find(fam, values))) {
                for (i = 0;
                     i < families[fam].n_bounds && v > families[fam].bounds[i];
                     i++)
                        ;
                s->counts[i]++;
                s->sum += v;
        }
        pthread_mutex_unlock(&lock);
}

/* Seconds from ts_ms to now; 0 for a clock behind the stamp. */
static double age_s(int64_t ts_ms) {
        int64_t d = ordo_wall_ms() - ts_ms;
        return d > 0 ? (double)d / 1000.0 : 0.0;
}

static void decision(const char *stage, const char *command, const char *result,
                     const char *reason, int64_t ts_ms) {
        const char *v[] = { stage, command, result, reason };
        add(F_DECISIONS, v, 1);
        if (ts_ms > 0)
                observe(F_DECISION_SECONDS, v, age_s(ts_ms));
}

void ordo_metrics_decision(const char *stage, const char *command,
                           const char *reason, int64_t ts_ms) {
        decision(stage, command, reason && *reason ? "rejected" : "accepted",
                 reason ? reason : "", ts_ms);
}

void ordo_metrics_ignored(const char *stage, const char *command,
                          int64_t ts_ms) {
        decision(stage, command, "ignored", "", ts_ms);
}

void ordo_metrics_transaction(const char *stage, int64_t ms) {
        observe(F_TXN_SECONDS, &stage, (double)ms / 1000.0);
}

void ordo_metrics_transaction_end(const char *stage, int64_t offsets_ms,
                                  int64_t deliveries_ms, int64_t commit_ms) {
        const char *v[][2] = { { stage, "offsets" },
                               { stage, "deliveries" },
                               { stage, "commit" } };
        observe(F_TXN_END_SECONDS, v[0], (double)offsets_ms / 1000.0);
        observe(F_TXN_END_SECONDS, v[1], (double)deliveries_ms / 1000.0);
        observe(F_TXN_END_SECONDS, v[2], (double)commit_ms / 1000.0);
}

void ordo_metrics_abort(const char *stage) {
        add(F_ABORTS, &stage, 1);
}

void ordo_metrics_dead_letter(const char *stage, const char *reason) {
        const char *v[] = { stage, reason };
        add(F_DEAD_LETTERS, v, 1);
}

void ordo_metrics_stage_start(const char *stage, int processor) {
        /* The dead-letter reasons of processors/stream.c and of
         * projections/project_loop.c. */
        static const char *processor_reasons[] = { "undecodable",
                                                   "unexpected_type",
                                                   "wrong_partition", NULL };
        static const char *projection_reasons[] = { "undecodable",
                                                    "unexpected_type",
                                                    "store_refused", NULL };
        const char **r = processor ? processor_reasons : projection_reasons;
        if (processor)
                add(F_ABORTS, &stage, 0);
        for (; *r; r++) {
                const char *v[] = { stage, *r };
                add(F_DEAD_LETTERS, v, 0);
        }
}

void ordo_metrics_restore(const char *stage, int64_t ms) {
        observe(F_RESTORE_SECONDS, &stage, (double)ms / 1000.0);
}

void ordo_metrics_applied(const char *store, int64_t ts_ms) {
        observe(F_PROJECTION_LAG, &store, age_s(ts_ms));
}

/* Call locked. */
static health_t *health_find(const char *stage, int create) {
        int i;
        for (i = 0; i < n_stages; i++)
                if (!strcmp(stages[i].name, stage))
                        return &stages[i];
        if (!create || n_stages == MAX_STAGES)
                return NULL;
        snprintf(stages[n_stages].name, sizeof(stages[n_stages].name), "%s",
                 stage);
        return &stages[n_stages++];
}

/* Drops the stage's lag series (the assignment may have changed) and
 * records the current ones. Call locked. */
static void drop_lag(const char *stage) {
        series_t **pp = &series[F_LAG], *s;
        size_t i;
        while ((s = *pp)) {
                if (strcmp(s->values[0], stage)) {
                        pp = &s->next;
                        continue;
                }
                *pp = s->next;
                for (i = 0; i < MAX_LABELS; i++)
                        free(s->values[i]);
                free(s);
        }
}

/* Where the stage stands in each partition of a: the committed offsets
 * if paused (nothing fetched is applied), else the positions, or the
 * committed offset where nothing was consumed since the assignment.
 * RD_KAFKA_OFFSET_END where the broker did not answer: no sample then,
 * rather than a lag of the whole partition. */
static void stand(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *a,
                  int paused) {
        rd_kafka_topic_partition_list_t *unknown;
        int i, failed;
        if (!paused)
                rd_kafka_position(rk, a);
        unknown = rd_kafka_topic_partition_list_new(a->cnt ? a->cnt : 1);
        for (i = 0; i < a->cnt; i++)
                if (paused || a->elems[i].offset < 0)
                        rd_kafka_topic_partition_list_add(
                            unknown, a->elems[i].topic, a->elems[i].partition);
        if (unknown->cnt) {
                failed = rd_kafka_committed(rk, unknown, 500) != 0;
                for (i = 0; i < unknown->cnt; i++)
                        rd_kafka_topic_partition_list_find(
                            a, unknown->elems[i].topic,
                            unknown->elems[i].partition)
                            ->offset = failed || unknown->elems[i].err
                                           ? RD_KAFKA_OFFSET_END
                                           : unknown->elems[i].offset;
        }
        rd_kafka_topic_partition_list_destroy(unknown);
}

/* Where the partitions begin and end (lo[i], hi[i] for a->elems[i], -1
 * unknown): as last fetched, or, paused (not fetched), the ends asked of
 * the broker in one request per leader. -1 if the broker did not
 * answer. */
static int bounds(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *a,
                  int paused, int64_t *lo, int64_t *hi) {
        rd_kafka_topic_partition_list_t *q;
        int i, failed = 0;
        for (i = 0; i < a->cnt; i++)
                if (rd_kafka_get_watermark_offsets(rk, a->elems[i].topic,
                                                   a->elems[i].partition,
                                                   &lo[i], &hi[i]))
                        lo[i] = hi[i] = -1;
        if (!paused)
                return 0;
        q = rd_kafka_topic_partition_list_copy(a);
        for (i = 0; i < q->cnt; i++)
                q->elems[i].offset = RD_KAFKA_OFFSET_END; /* the latest */
        if (rd_kafka_offsets_for_times(rk, q, 500))
                failed = -1;
        for (i = 0; i < a->cnt; i++)
                hi[i] = failed || q->elems[i].err ? -1 : q->elems[i].offset;
        rd_kafka_topic_partition_list_destroy(q);
        return failed;
}

/* a's topics, partitions and offsets alone: a list copy would hold its
 * partitions' references, and the consumer's destroy waits for those. */
static rd_kafka_topic_partition_list_t *
plain_copy(const rd_kafka_topic_partition_list_t *a) {
        rd_kafka_topic_partition_list_t *c =
            rd_kafka_topic_partition_list_new(a->cnt ? a->cnt : 1);
        int i;
        for (i = 0; i < a->cnt; i++)
                rd_kafka_topic_partition_list_add(c, a->elems[i].topic,
                                                  a->elems[i].partition)
                    ->offset = a->elems[i].offset;
        return c;
}

/* 1 when every one of n partitions (one at least) has a lag of 0. */
static int caught_up(const int64_t *lags, int n) {
        int i;
        for (i = 0; i < n; i++)
                if (lags[i] != 0)
                        return 0;
        return n > 0;
}

static void poll_lag(const char *stage, rd_kafka_t *rk, int paused) {
        char *member;
        rd_kafka_topic_partition_list_t *a = NULL;
        int64_t now = ordo_monotonic_ms(), *lo, *hi, *lags;
        health_t *h;
        int i, unanswered;

        pthread_mutex_lock(&lock);
        h = health_find(stage, 1);
        if (h && h->last_poll && now - h->last_poll < 1000) {
                pthread_mutex_unlock(&lock);
                return;
        }
        if (h)
                h->last_poll = now;
        pthread_mutex_unlock(&lock);

        if (rd_kafka_assignment(rk, &a))
                return;
        stand(rk, a, paused);
        lags = calloc((size_t)a->cnt + 1, sizeof(*lags));
        lo = calloc((size_t)a->cnt + 1, sizeof(*lo));
        hi = calloc((size_t)a->cnt + 1, sizeof(*hi));
        unanswered = !lags || !lo || !hi || bounds(rk, a, paused, lo, hi);
        for (i = 0; !unanswered && i < a->cnt; i++) {
                lags[i] = -1;
                if (hi[i] < 0)
                        continue;
                if (a->elems[i].offset >= 0)
                        lags[i] = hi[i] > a->elems[i].offset
                                      ? hi[i] - a->elems[i].offset
                                      : 0;
                else if (a->elems[i].offset == RD_KAFKA_OFFSET_INVALID &&
                         lo[i] >= 0)
                        lags[i] = hi[i] - lo[i]; /* nothing committed yet */
        }
        free(lo);
        free(hi);
        if (unanswered) {
                /* the broker did not say: the last series stay */
                free(lags);
                lags = NULL;
        }
        member = rd_kafka_memberid(rk); /* NULL or "": not joined yet */
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 0))) {
                h->assigned = member && *member ? a->cnt : -1;
                if (h->assigned >= 0)
                        h->in_group = now;
                if (h->refilling && lags && caught_up(lags, a->cnt))
                        h->refilling = 0; /* whole again */
                h->rk = rk;
                if (h->stood)
                        rd_kafka_topic_partition_list_destroy(h->stood);
                h->stood = plain_copy(a);
        }
        if (lags)
                drop_lag(stage);
        for (i = 0; lags && i < a->cnt; i++) {
                char part[16];
                const char *v[] = { stage, a->elems[i].topic, part };
                series_t *s;
                if (lags[i] < 0)
                        continue;
                snprintf(part, sizeof(part), "%d", (int)a->elems[i].partition);
                if ((s = find(F_LAG, v)))
                        s->value = (double)lags[i];
        }
        pthread_mutex_unlock(&lock);
        free(lags);
        if (member)
                rd_kafka_mem_free(rk, member);
        rd_kafka_topic_partition_list_destroy(a);
}

void ordo_metrics_poll(const char *stage, void *consumer) {
        poll_lag(stage, consumer, 0);
}

void ordo_metrics_poll_paused(const char *stage, void *consumer) {
        poll_lag(stage, consumer, 1);
}

void ordo_metrics_lost(const char *stage) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 0))) {
                h->assigned = -1;
                h->last_poll = 0; /* backing off is not a stall */
                h->rk = NULL;
                if (h->stood)
                        rd_kafka_topic_partition_list_destroy(h->stood);
                h->stood = NULL;
        }
        drop_lag(stage);
        pthread_mutex_unlock(&lock);
}

void ordo_metrics_store_call(const char *stage, int begin) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 1)))
                h->store_call = begin ? ordo_monotonic_ms() : 0;
        pthread_mutex_unlock(&lock);
}

void ordo_metrics_store_answered(const char *stage) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 0)) && h->store_call)
                h->store_call = ordo_monotonic_ms();
        pthread_mutex_unlock(&lock);
}

/* How long h's store call has waited, if ORDO_STORE_WAIT_MS or more. */
static int64_t store_waiting(const health_t *h, int64_t now) {
        return h->store_call && now - h->store_call >= ORDO_STORE_WAIT_MS
                   ? now - h->store_call
                   : 0;
}

/* Under lock, for a stage held in a store call: its lag, from where it
 * stood at its last poll (the batch in the call not applied) to the
 * ends its consumer has fetched since. Those are librdkafka's cached
 * watermarks, read without a round trip: the fetcher goes on while the
 * stage's thread waits, so the lag grows with what arrives, where it
 * stayed at its last value (0 for a caught-up projection) until the
 * call ended. The consumer lives while the call goes on: the stage
 * ends the call, under this lock, before it can close it. */
static void lag_while_held(const health_t *h, int64_t now) {
        int i;
        /* still polling (paused, waiting for a store that refuses): its
         * own figures are newer, from the broker */
        if (now - h->last_poll < 3000)
                return;
        for (i = 0; h->rk && h->stood && i < h->stood->cnt; i++) {
                const rd_kafka_topic_partition_t *p = &h->stood->elems[i];
                char part[16];
                const char *v[] = { h->name, p->topic, part };
                int64_t lo, hi;
                series_t *s;
                if (p->offset < 0 ||
                    rd_kafka_get_watermark_offsets(h->rk, p->topic,
                                                   p->partition, &lo, &hi) ||
                    hi < 0)
                        continue;
                snprintf(part, sizeof(part), "%d", (int)p->partition);
                if ((s = find(F_LAG, v)))
                        s->value =
                            (double)(hi > p->offset ? hi - p->offset : 0);
        }
}

/* Under lock: a store call unanswered this long is a store away. */
static void mark_stores_waiting(void) {
        int64_t now = ordo_monotonic_ms();
        int i;
        for (i = 0; i < n_stages; i++) {
                const char *v[] = { stages[i].name };
                series_t *s;
                if (!store_waiting(&stages[i], now))
                        continue;
                stages[i].store_down = 1;
                if ((s = find(F_STORE_UP, v)))
                        s->value = 0;
                lag_while_held(&stages[i], now);
        }
}

void ordo_metrics_write(FILE *f) {
        const char *labels[2 * MAX_LABELS + 1];
        series_t *s;
        size_t i, n;
        int fam;

        pthread_mutex_lock(&lock);
        mark_stores_waiting();
        for (fam = 0; fam < F__COUNT; fam++) {
                static const char *types[] = { "counter", "gauge",
                                               "histogram" };
                ordo_prom_family(f, families[fam].name,
                                 types[families[fam].kind], families[fam].help);
                n = n_labels(fam);
                for (s = series[fam]; s; s = s->next) {
                        for (i = 0; i < n; i++) {
                                labels[2 * i] = families[fam].labels[i];
                                labels[2 * i + 1] = s->values[i];
                        }
                        labels[2 * n] = NULL;
                        if (families[fam].kind == HISTOGRAM)
                                ordo_prom_histogram(
                                    f, families[fam].name, labels,
                                    families[fam].bounds, s->counts,
                                    families[fam].n_bounds, s->sum);
                        else
                                ordo_prom_sample(f, families[fam].name, labels,
                                                 s->value);
                }
        }
        pthread_mutex_unlock(&lock);
        ordo_prom_process(f);
}

/* ---- health ---- */

void ordo_health_start(const char *stage) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 1))) {
                h->state = ST_RUNNING;
                h->err = ORDO_ERR_OK;
                h->assigned = -1;
                h->last_poll = 0;
                h->in_group = 0;
                h->store_down = 0;
                h->refilling = 0;
        }
        pthread_mutex_unlock(&lock);
}

void ordo_health_refilling(const char *stage) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 1)))
                h->refilling = 1;
        pthread_mutex_unlock(&lock);
}

void ordo_health_restoring(const char *stage, int on) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 1)))
                h->restoring = on;
        pthread_mutex_unlock(&lock);
}

int ordo_health_is_refilling(const char *stage) {
        health_t *h;
        int refilling;
        pthread_mutex_lock(&lock);
        refilling = (h = health_find(stage, 0)) && h->refilling;
        pthread_mutex_unlock(&lock);
        return refilling;
}

void ordo_health_stop(const char *stage, ordo_err_t err) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 1))) {
                h->state = err ? ST_FAILED : ST_STOPPED;
                h->err = err;
        }
        pthread_mutex_unlock(&lock);
}

void ordo_health_beat(const char *stage) {
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((h = health_find(stage, 1))) {
                h->state = ST_RUNNING;
                h->assigned = 1;
                h->last_poll = h->in_group = ordo_monotonic_ms();
        }
        pthread_mutex_unlock(&lock);
}

void ordo_metrics_store_up(const char *stage, int up) {
        const char *v[] = { stage };
        series_t *s;
        health_t *h;
        pthread_mutex_lock(&lock);
        if ((s = find(F_STORE_UP, v)))
                s->value = up;
        if ((h = health_find(stage, 1)))
                h->store_down = !up;
        pthread_mutex_unlock(&lock);
}

void ordo_metrics_state_bytes(const char *stage, size_t bytes) {
        const char *v[] = { stage };
        series_t *s;
        pthread_mutex_lock(&lock);
        if ((s = find(F_STATE_BYTES, v)))
                s->value = (double)bytes;
        pthread_mutex_unlock(&lock);
}

static char starting[200];

void ordo_health_starting(const char *what) {
        pthread_mutex_lock(&lock);
        snprintf(starting, sizeof(starting), "%s", what ? what : "");
        pthread_mutex_unlock(&lock);
}

int ordo_health_check(char *why, size_t why_size) {
        int64_t now = ordo_monotonic_ms();
        int i, ok = 1, readers = 0, standby = 0;
        char names[256] = "", standbys[256] = "";
        size_t used = 0, used_standby = 0;
        pthread_mutex_lock(&lock);
        for (i = 0; i < n_stages && used < sizeof(names); i++) {
                used += (size_t)snprintf(names + used, sizeof(names) - used,
                                         "%s%s", i ? ", " : "", stages[i].name);
                readers += stages[i].rk != NULL;
        }
        /* the dash beats as a "stage" that reads no Kafka */
        snprintf(why, why_size, "%d running (%s), each turning%s", n_stages,
                 names, readers ? " and holding the partitions it reads" : "");
        if (!n_stages) {
                snprintf(why, why_size, "no stage started%s%s",
                         *starting ? ": " : "", starting);
                ok = 0;
        }
        for (i = 0; ok && i < n_stages; i++) {
                const health_t *h = &stages[i];
                ok = 0;
                if (h->state == ST_FAILED)
                        snprintf(why, why_size, "%s failed: %s", h->name,
                                 ordo_err_str(h->err));
                else if (h->state == ST_STOPPED)
                        snprintf(why, why_size, "%s stopped", h->name);
                /* Blocked on its store: that, not a stall. */
                else if (store_waiting(h, now))
                        snprintf(why, why_size,
                                 "%s in a call to its store for %lld s (no "
                                 "answer, or refused and retried: its log "
                                 "says which)",
                                 h->name,
                                 (long long)store_waiting(h, now) / 1000);
                /* A long restore holds the loop: that, not a stall. */
                else if (h->restoring)
                        snprintf(why, why_size,
                                 "%s restoring the state of its partitions "
                                 "from the log",
                                 h->name);
                /* A loop that stopped turning (a stuck call) is the
                 * reason, whatever it last held. */
                else if (h->last_poll && now - h->last_poll > STALL_MS)
                        snprintf(why, why_size,
                                 "%s stalled: no turn of its loop for %lld s",
                                 h->name,
                                 (long long)(now - h->last_poll) / 1000);
                else if (h->store_down)
                        snprintf(why, why_size,
                                 "%s cannot use its store (retrying; its "
                                 "log says why)",
                                 h->name);
                /* a read model being filled again is not whole yet */
                else if (h->refilling)
                        snprintf(why, why_size,
                                 "%s refilling its read model from the start "
                                 "of its inputs (ordo_consumer_lag says how "
                                 "far)",
                                 h->name);
                /* Out of its group after being in it: the broker away
                 * for longer than the session, a fence, a rejoin;
                 * "not joined yet" read as a start that never ended. */
                else if (h->assigned < 0 && h->in_group)
                        snprintf(why, why_size,
                                 "%s out of its group for %lld s, joining "
                                 "again (its log says why)",
                                 h->name,
                                 (long long)(now - h->in_group) / 1000);
                else if (h->assigned < 0)
                        snprintf(why, why_size,
                                 "%s has not joined its group yet", h->name);
                else {
                        /* In its group and given nothing: a standby (a
                         * one-partition stage, the referral processor's,
                         * in all but one of several `ordo run`s) */
                        if (h->assigned == 0 && used_standby < sizeof(standbys))
                                used_standby += (size_t)snprintf(
                                    standbys + used_standby,
                                    sizeof(standbys) - used_standby, "%s%s",
                                    standby++ ? ", " : "", h->name);
                        ok = 1;
                }
        }
        pthread_mutex_unlock(&lock);
        /* A process whose every stage stands by has nothing to do: its
         * group has more members than partitions. */
        if (ok && standby && standby == readers) {
                snprintf(why, why_size, "%s hold%s no partition", standbys,
                         standby > 1 ? "" : "s");
                ok = 0;
        } else if (ok && standby) {
                size_t len = strlen(why);
                snprintf(why + len, why_size - len,
                         "; standing by with no partition: %s", standbys);
        }
        return ok;
}

/* ---- the listener ---- */

struct ordo_metrics_server_s {
        struct MHD_Daemon *mhd;
        ordo_metrics_source_t src;
};

static void registry_write(FILE *f, void *arg) {
        (void)arg;
        ordo_metrics_write(f);
}

static unsigned stages_health(void *arg, char **body, const char **type) {
        char why[256];
        int ok = ordo_health_check(why, sizeof(why));
        (void)arg;
        *type = "text/plain";
        if (asprintf(body, "%s: %s\n", ok ? "ok" : "unavailable", why) < 0)
                *body = NULL;
        return ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
}

static const ordo_metrics_source_t registry = { registry_write, stages_health,
                                                NULL };

int ordo_http_reply(struct MHD_Connection *c, unsigned status, const char *type,
                    const char *body, size_t len, int must_free) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            len, (void *)body,
            must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        enum MHD_Result ret;
        if (!r) {
                if (must_free)
                        free((void *)body);
                return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        /* RFC 9110: a 405 names the methods allowed (ours are read-only) */
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
        const ordo_metrics_source_t *src = &((ordo_metrics_server_t *)cls)->src;
        const char *type;
        char *text = NULL;
        size_t size = 0;
        unsigned status;
        FILE *f;
        (void)version;
        (void)upload;
        (void)upload_size;
        (void)con_cls;

        if (strcmp(method, MHD_HTTP_METHOD_GET) &&
            strcmp(method, MHD_HTTP_METHOD_HEAD))
                return (enum MHD_Result)ordo_http_reply(
                    c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "use GET\n",
                    8, 0);
        if (!strcmp(url, "/healthz")) {
                status = src->health(src->arg, &text, &type);
                if (!text)
                        return MHD_NO;
                return (enum MHD_Result)ordo_http_reply(c, status, type, text,
                                                        strlen(text), 1);
        }
        if (strcmp(url, "/metrics"))
                return (enum MHD_Result)ordo_http_reply(
                    c, MHD_HTTP_NOT_FOUND, "text/plain",
                    "paths: /metrics, /healthz\n", 26, 0);
        if (!(f = open_memstream(&text, &size)))
                return MHD_NO;
        src->write(f, src->arg);
        fclose(f);
        return (enum MHD_Result)ordo_http_reply(
            c, MHD_HTTP_OK, ORDO_PROM_CONTENT_TYPE, text, size, 1);
}

void ordo_http_log(void *stage, const char *fmt, va_list ap) {
        char line[256], q[300];
        vsnprintf(line, sizeof(line), fmt, ap);
        line[strcspn(line, "\n")] = '\0';
        /* It names the option's port (0), not the address: the caller
         * says which address was taken. */
        if (!strncmp(line, "Failed to bind", 14))
                return;
        ORDO_LOG(WARN, (const char *)stage, "msg=\"%s\"",
                 ordo_log_quote(q, sizeof(q), line));
}

const char *ordo_metrics_address(const ordo_config_t *conf,
                                 const char *auto_default) {
        const char *v = ordo_config_get(conf, "metrics.listen");
        if (!v || !strcmp(v, "auto"))
                v = auto_default;
        return v && *v ? v : NULL;
}

ordo_metrics_server_t *ordo_metrics_serve(const char *listen,
                                          const ordo_metrics_source_t *src,
                                          char *errstr, size_t errstr_size) {
        struct sockaddr_in sa;
        ordo_metrics_server_t *s;
        char host[INET_ADDRSTRLEN];

        if (ordo_parse_listen(listen, &sa)) {
                snprintf(errstr, errstr_size,
                         "metrics.listen: expected IPv4 HOST:PORT, got "
                         "'%.64s'",
                         listen);
                return NULL;
        }
        if (!(s = calloc(1, sizeof(*s)))) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        s->src = src ? *src : registry;
        errno = 0;
        s->mhd = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
            on_request, s, MHD_OPTION_EXTERNAL_LOGGER, ordo_http_log, "metrics",
            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
            MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
            10u, MHD_OPTION_END);
        if (!s->mhd) {
                /* errno is bind's (libmicrohttpd closes the socket after) */
                snprintf(errstr, errstr_size,
                         "metrics.listen: cannot listen on %s (%s)", listen,
                         errno ? strerror(errno) : "address in use?");
                free(s);
                return NULL;
        }
        inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
        ORDO_LOG(INFO, "metrics",
                 "msg=listening addr=%s:%u paths=/metrics,/healthz", host,
                 ordo_http_bound_port(s->mhd, &sa));
        return s;
}

unsigned ordo_http_bound_port(struct MHD_Daemon *d,
                              const struct sockaddr_in *sa) {
        const union MHD_DaemonInfo *info =
            MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
        return info ? (unsigned)info->port : (unsigned)ntohs(sa->sin_port);
}

ordo_metrics_server_t *ordo_metrics_start(const ordo_config_t *conf,
                                          const char *auto_default,
                                          int *failed) {
        const char *addr = ordo_metrics_address(conf, auto_default);
        const char *v = ordo_config_get(conf, "metrics.listen");
        ordo_metrics_server_t *s;
        char errstr[256];

        *failed = 0;
        if (!addr)
                return NULL;
        if ((s = ordo_metrics_serve(addr, NULL, errstr, sizeof(errstr))))
                return s;
        if (v && !strcmp(v, "auto"))
                ORDO_LOG(WARN, "metrics",
                         "msg=\"metrics off: %s; set metrics.listen to a free "
                         "address\"",
                         errstr);
        else {
                ORDO_LOG(ERROR, "metrics", "msg=\"%s\"", errstr);
                *failed = 1;
        }
        return NULL;
}

void ordo_metrics_server_stop(ordo_metrics_server_t *s) {
        if (!s)
                return;
        MHD_stop_daemon(s->mhd);
        free(s);
}
