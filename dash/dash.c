/*
 * ordo dash: a live page of a sale. A sampler (the main thread) reads
 * Redis (stock, the leaderboard) and the stages' /metrics and /healthz
 * every 2 s (SAMPLE_MS), takes what MongoDB's reader (a thread of its
 * own, on the same beat) last read of activities, orders and earnings,
 * and keeps the result as one JSON document plus a ring of samples for
 * the orders/s chart: a MongoDB that hangs holds its own figures, not
 * the rest of the page. The HTTP thread serves the embedded page and
 * that document; the page polls it. Nothing here reads the
 * rules' state or Kafka: a dash can run anywhere the read models can be
 * read (docs/operating.md "The live page").
 *
 * Sized for a sale's page, not for analytics: one $group over orders per
 * sample, which is fine for the orders of a few activities.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <mongoc/mongoc.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "commands.h"
#include "dash_page.h"
#include "log.h"
#include "metrics.h"
#include "mongo_conn.h"
#include "redis_conn.h"

#define HISTORY        300 /* samples kept for the chart */
#define LATENCY_WINDOW 30 /* samples: the latency shown is of the last minute */
#define SAMPLE_MS      2000 /* one sample every 2 s: 10 minutes of history */
#define MAX_ACTIVITIES 64   /* shown: the latest by start_ms */
#define HOLDS_SHOWN    8    /* per activity */
#define HOLDS_READ     4096 /* holds read per sample, earliest first */
#define TOP_EARNERS    10
/* The first sample waits this long for MongoDB's first figures. */
#define FIRST_READ_MS 6000

typedef struct {
        int64_t t_ms;
        json_t *accepted;    /* activity_id -> accepted orders so far */
        int64_t accepted_ms; /* when MongoDB gave those (0: never) */
        double rejected;     /* PlaceOrder rejections, whole sale */
        json_t *latency;     /* [[le, count so far]], the activity stage's */
} sample_t;

/* What MongoDB's reader last read, for the sampler; under dash_t.lock. */
typedef struct {
        /* {activities, activities_total, accepted, commissions (no top)}
         * of the last read that worked, or NULL: shown with
         * mongo_as_of_ms while MongoDB cannot be read (not an empty
         * sale) */
        json_t *figures;
        /* when that read began (wall clock): what was written before is
         * in the figures */
        int64_t figures_ms;
        char error[BSON_ERROR_BUFFER_SIZE]; /* the last read's, "" none */
        int64_t reads;                      /* reads ended */
        int ended;                          /* the reader has returned */
} mongo_view_t;

typedef struct {
        const ordo_config_t *conf;
        /* MongoDB's reader thread alone uses the client, the database
         * and read_error (the first error of the read going on). */
        mongoc_client_t *mongo;
        mongoc_database_t *db;
        char read_error[BSON_ERROR_BUFFER_SIZE];
        redisContext *redis;
        pthread_mutex_t lock;
        pthread_cond_t read_ended; /* a read or the reader ended */
        mongo_view_t view;         /* under lock */
        char *doc;                 /* the latest state, JSON; under lock */
        int64_t doc_ms;            /* when it was made (wall clock) */
        sample_t ring[HISTORY];
        int n_ring, next_ring;
        /* The error of this sample from each store ("" none), and of
         * the last one: a change is logged once, not every 2 s; a Redis
         * that failed is not asked again in the same sample. */
        char last_mongo_error[BSON_ERROR_BUFFER_SIZE];
        char redis_error[256], last_redis_error[256];
        int64_t samples;                    /* for the stop's line */
        atomic_uint_fast64_t pages, states; /* requests answered 200 */
} dash_t;

/* ---- scraping the stages ---- */

/* A scrape's bounds: a target that sends without end, or a byte now and
 * then, must not hold the sampler (nor its memory, nor a stop). */
#define SCRAPE_MS  2000
#define SCRAPE_MAX (4 << 20) /* bytes of one answer */

/* A blocking HTTP/1.0 GET of a small page on loopback-like networks,
 * within SCRAPE_MS and SCRAPE_MAX; returns the body (malloc'd) and
 * *status, or NULL. */
static char *http_get(const char *addr, const char *path, int *status) {
        struct sockaddr_in sa;
        struct timeval tv = { SCRAPE_MS / 1000, 0 };
        char req[256], *buf = NULL, *body;
        size_t len = 0, cap = 0;
        int64_t deadline = ordo_monotonic_ms() + SCRAPE_MS;
        ssize_t n;
        int fd, whole = 0;

        if (ordo_parse_listen(addr, &sa) ||
            (fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
                return NULL;
        /* the send timeout bounds connect() too (Linux) */
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n", path,
                 addr);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
            write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
                close(fd);
                return NULL;
        }
        while (!ordo_stop && len < SCRAPE_MAX) {
                struct pollfd pfd = { fd, POLLIN, 0 };
                int64_t left = deadline - ordo_monotonic_ms();
                if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
                        break;
                if (len + 4096 + 1 > cap) {
                        char *nb = realloc(buf, cap = cap * 2 + 8192);
                        if (!nb)
                                break;
                        buf = nb;
                }
                if ((n = read(fd, buf + len, cap - len - 1)) <= 0) {
                        whole = n == 0; /* HTTP/1.0: the end is the close */
                        break;
                }
                len += (size_t)n;
        }
        close(fd);
        if (!buf || !whole) {
                free(buf);
                return NULL;
        }
        buf[len] = '\0';
        if (sscanf(buf, "HTTP/%*s %d", status) != 1 ||
            !(body = strstr(buf, "\r\n\r\n"))) {
                free(buf);
                return NULL;
        }
        memmove(buf, body + 4, strlen(body + 4) + 1);
        return buf;
}

/* The value of label `name` in a sample line's {...}, into out; -1 if
 * there is none, or it does not fit (no name of ordo's is that long, and
 * a cut could split a UTF-8 character). */
static int label(const char *line, const char *name, char *out, size_t size) {
        char key[64];
        const char *p, *e;
        snprintf(key, sizeof(key), "%s=\"", name);
        if (!(p = strstr(line, key)) || p > strchr(line, '}'))
                return -1;
        p += strlen(key);
        for (e = p; *e && *e != '"'; e++)
                if (*e == '\\' && e[1])
                        e++;
        if ((size_t)(e - p) >= size)
                return -1;
        snprintf(out, size, "%.*s", (int)(e - p), p);
        return 0;
}

/* A sample line's value: the first field after its name and labels (a
 * timestamp may follow); NAN when there is none. */
static double sample_value(const char *line) {
        const char *p = strchr(line, '}');
        char *end;
        double v;
        p = p ? p + 1 : line + strcspn(line, " ");
        v = strtod(p, &end);
        return end == p ? NAN : v;
}

/* Adds v to obj[key] (a number). */
static void add_to(json_t *obj, const char *key, double v) {
        json_t *old = json_object_get(obj, key);
        json_object_set_new(obj, key,
                            json_real((old ? json_number_value(old) : 0) + v));
}

/* The +Inf bound, kept as a number JSON can hold (it has no infinity). */
#define LE_INF 1e300

/* Quantile q from cumulative buckets [{le, count}], linear within a
 * bucket as Prometheus' histogram_quantile does; NaN when empty. */
/* *over: the quantile is past the last finite bound (the +Inf bucket),
 * which is then returned: "> 60 s", not 60 s. */
static double quantile(json_t *buckets, double q, int *over) {
        size_t i, n = json_array_size(buckets);
        double total, prev_le = 0, prev_c = 0;
        *over = 0;
        if (!n)
                return NAN;
        total = json_number_value(
            json_array_get(json_array_get(buckets, n - 1), 1));
        if (total <= 0)
                return NAN;
        for (i = 0; i < n; i++) {
                json_t *b = json_array_get(buckets, i);
                double le = json_number_value(json_array_get(b, 0));
                double c = json_number_value(json_array_get(b, 1));
                if (c >= q * total) {
                        *over = le >= LE_INF;
                        if (*over)
                                return prev_le;
                        return prev_le + (le - prev_le) * (q * total - prev_c) /
                                             (c - prev_c > 0 ? c - prev_c : 1);
                }
                prev_le = le;
                prev_c = c;
        }
        return prev_le;
}

/* lat.<name>_s (-1: nothing observed), and <name>_over when it is past
 * the last finite bound. */
static void latency_quantile(json_t *lat, const char *name, json_t *buckets,
                             double q) {
        char key[16];
        int over;
        double v = quantile(buckets, q, &over);
        snprintf(key, sizeof(key), "%s_s", name);
        json_object_set_new(lat, key, json_real(isnan(v) ? -1 : v));
        if (over) {
                snprintf(key, sizeof(key), "%s_over", name);
                json_object_set_new(lat, key, json_true());
        }
}

/* The buckets of what was observed between then and now (cumulative
 * counts, the same bounds); now's own when then is NULL or a count went
 * down (a stage process restarted). A new reference. */
static json_t *observed_since(json_t *now, json_t *then) {
        json_t *out = json_array(), *b;
        size_t i;
        if (!then || json_array_size(then) != json_array_size(now))
                goto whole;
        json_array_foreach(now, i, b) {
                json_t *o = json_array_get(then, i);
                double le = json_number_value(json_array_get(b, 0));
                double c = json_number_value(json_array_get(b, 1)) -
                           json_number_value(json_array_get(o, 1));
                if (json_number_value(json_array_get(o, 0)) != le || c < 0)
                        goto whole;
                json_array_append_new(out, json_pack("[f, f]", le, c));
        }
        return out;
whole:
        json_decref(out);
        return json_incref(now);
}

/* Adds addr to a stage row's "process" (comma-separated) unless there. */
static void name_process(json_t *st, const char *addr) {
        const char *have = json_string_value(json_object_get(st, "process"));
        size_t n = strlen(addr);
        const char *p;
        char *both;
        for (p = have; p && (p = strstr(p, addr)); p += n)
                if ((p == have || p[-1] == ' ') && (!p[n] || p[n] == ','))
                        return;
        if (!have || asprintf(&both, "%s, %s", have, addr) < 0)
                return;
        json_object_set_new(st, "process", json_string(both));
        free(both);
}

/* Reads one process's /healthz and /metrics into stages (by stage) and
 * rejections (PlaceOrder rejections by reason, the order stage's
 * OpenOrder ones included). 0 when its /metrics could not be read: the
 * sums are then short of its counts. */
static int scrape(const char *addr, json_t *procs, json_t *stages,
                  json_t *rejections, json_t *latency, double *rejected) {
        int status = 0;
        char *health = http_get(addr, "/healthz", &status), *text, *line,
             *save = NULL;
        json_t *proc = json_object(), *said;

        json_object_set_new(proc, "address", json_string(addr));
        json_object_set_new(proc, "healthy",
                            json_boolean(health && status == 200));
        if (health)
                health[strcspn(health, "\n")] = '\0';
        said = json_string(health ? health : "unreachable");
        json_object_set_new(proc, "health",
                            said ? said : json_string("(not UTF-8)"));
        json_array_append_new(procs, proc);
        /* one that did not answer its /healthz is not asked for more:
         * each such target would cost the sample another SCRAPE_MS */
        text = health ? http_get(addr, "/metrics", &status) : NULL;
        free(health);
        if (!text || status != 200) {
                free(text);
                return 0;
        }
        for (line = strtok_r(text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                char stage[64], result[32], reason[64], cmd[64], le[32];
                double v;
                json_t *st;
                /* A projection's stage is its store. */
                if (*line == '#' ||
                    (label(line, "stage", stage, sizeof(stage)) &&
                     label(line, "store", stage, sizeof(stage))))
                        continue;
                if (!isfinite(v = sample_value(line)))
                        continue; /* no value, NaN: nothing to add */
                if (!(st = json_object_get(stages, stage))) {
                        st = json_pack("{s:s, s:f, s:f, s:f, s:f}", "process",
                                       addr, "lag", 0.0, "decisions", 0.0,
                                       "aborts", 0.0, "dead_letters", 0.0);
                        /* a key that is not UTF-8 is refused, st freed */
                        if (json_object_set_new(stages, stage, st))
                                continue;
                } else
                        /* instances of a stage in several processes:
                         * the row sums them and names them all */
                        name_process(st, addr);
                if (!strncmp(line, "ordo_consumer_lag{", 18))
                        add_to(st, "lag", v);
                else if (!strncmp(line, "ordo_transactions_aborted_total{", 32))
                        add_to(st, "aborts", v);
                else if (!strncmp(line, "ordo_dead_letters_total{", 24))
                        add_to(st, "dead_letters", v);
                else if (!strncmp(line,
                                  "ordo_projection_event_lag_seconds_count{",
                                  40))
                        add_to(st, "decisions", v); /* events applied */
                else if (!strncmp(line, "ordo_decisions_total{", 21)) {
                        int has_cmd = !label(line, "command", cmd, sizeof(cmd));
                        /* Ticks are no decisions of the sale: the
                         * stage's own grew the column with no traffic;
                         * the metric cannot tell them from sent ones */
                        if (!has_cmd || strcmp(cmd, "Tick"))
                                add_to(st, "decisions", v);
                        if (has_cmd &&
                            !label(line, "result", result, sizeof(result)) &&
                            !strcmp(result, "rejected") &&
                            /* OpenOrder: the order stage refusing what
                             * the activity stage took (a PlaceOrder's
                             * DUPLICATE_ORDER_ID) */
                            (!strcmp(cmd, "PlaceOrder") ||
                             !strcmp(cmd, "OpenOrder")) &&
                            !label(line, "reason", reason, sizeof(reason))) {
                                add_to(rejections, reason, v);
                                *rejected += v;
                        }
                } else if (!strncmp(line,
                                    "ordo_decision_latency_seconds_bucket{",
                                    37) &&
                           !strcmp(stage, "activity") &&
                           !label(line, "le", le, sizeof(le))) {
                        /* Several processes: add bucket by bucket. */
                        double bound = strtod(le, NULL);
                        size_t i;
                        json_t *b;
                        if (isinf(bound))
                                bound = LE_INF;
                        json_array_foreach(
                            latency, i,
                            b) if (json_number_value(json_array_get(b, 0)) ==
                                   bound) {
                                json_array_set_new(
                                    b, 1,
                                    json_real(json_number_value(
                                                  json_array_get(b, 1)) +
                                              v));
                                break;
                        }
                        if (i == json_array_size(latency))
                                json_array_append_new(
                                    latency, json_pack("[f, f]", bound, v));
                }
        }
        free(text);
        return 1;
}

/* ---- the read models ---- */

static int64_t bson_int(const bson_t *doc, const char *key) {
        bson_iter_t it;
        if (!bson_iter_init_find(&it, doc, key))
                return 0;
        if (BSON_ITER_HOLDS_INT32(&it))
                return bson_iter_int32(&it);
        if (BSON_ITER_HOLDS_INT64(&it))
                return bson_iter_int64(&it);
        if (BSON_ITER_HOLDS_DOUBLE(&it)) {
                double d = bson_iter_double(&it);
                /* not ordo's (it writes integers): no undefined cast */
                return d > -9e18 && d < 9e18 ? (int64_t)d : 0;
        }
        return 0;
}

static const char *bson_str(const bson_t *doc, const char *key) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
                return bson_iter_utf8(&it, NULL);
        return "";
}

/* A Redis connection for this sample, or 0 (then redis_error says why;
 * not tried again before the next sample). */
static int redis_ok(dash_t *d) {
        if (d->redis_error[0])
                return 0;
        if (d->redis && !d->redis->err)
                return 1;
        if (d->redis)
                redisFree(d->redis);
        d->redis = ordo_redis_connect(d->conf, 2, d->redis_error,
                                      sizeof(d->redis_error));
        return d->redis != NULL;
}

/* r, or NULL after noting the sample's Redis error. */
static redisReply *redis_reply(dash_t *d, redisReply *r) {
        if (!r || r->type == REDIS_REPLY_ERROR)
                snprintf(d->redis_error, sizeof(d->redis_error), "redis: %s",
                         r ? r->str : d->redis->errstr);
        if (r && r->type == REDIS_REPLY_ERROR) {
                freeReplyObject(r);
                r = NULL;
        }
        return r;
}

/* Ends a cursor, keeping the read's first MongoDB error: an
 * unreachable store must not read as an empty sale. */
static void cursor_done(dash_t *d, mongoc_cursor_t *cur) {
        bson_error_t e;
        if (mongoc_cursor_error(cur, &e) && !d->read_error[0])
                snprintf(d->read_error, sizeof(d->read_error), "%s", e.message);
        mongoc_cursor_destroy(cur);
}

/* Appends to each sale of by_id its holds that expire first (up to
 * HOLDS_SHOWN), of the sales in ids in one query: one per sale took
 * seconds each on FerretDB during a sale. The read stops at HOLDS_READ
 * holds: returns how many it read. */
static int64_t read_holds(dash_t *d, mongoc_collection_t *orders, json_t *by_id,
                          const bson_t *ids) {
        bson_t *filter = BCON_NEW("activity_id", "{", "$in", BCON_ARRAY(ids),
                                  "}", "status", BCON_UTF8("PENDING_PAYMENT"));
        bson_t *opts =
            BCON_NEW("sort", "{", "pay_deadline_ms", BCON_INT32(1), "_id",
                     BCON_INT32(1), "}", "limit", BCON_INT64(HOLDS_READ));
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(orders, filter, opts, NULL);
        const bson_t *doc;
        json_t *a, *holds;
        int64_t n = 0;

        while (mongoc_cursor_next(cur, &doc)) {
                n++;
                if (!(a = json_object_get(by_id, bson_str(doc, "activity_id"))))
                        continue;
                holds = json_object_get(a, "next_holds");
                if (json_array_size(holds) < HOLDS_SHOWN)
                        json_array_append_new(
                            holds,
                            json_pack(
                                "{s:s, s:s, s:I, s:I}", "order_id",
                                bson_str(doc, "_id"), "user_id",
                                bson_str(doc, "user_id"), "amount_cents",
                                (json_int_t)bson_int(doc, "amount_cents"),
                                "pay_deadline_ms",
                                (json_int_t)bson_int(doc, "pay_deadline_ms")));
        }
        cursor_done(d, cur);
        bson_destroy(filter);
        bson_destroy(opts);
        return n;
}

/* Each activity's remaining stock from Redis, the fast path shoppers
 * see ("remaining"; absent where Redis has none or cannot be read). */
static void read_remaining(dash_t *d, json_t *list) {
        const char *prefix = ordo_config_get(d->conf, "redis.prefix");
        size_t i;
        json_t *a;
        json_array_foreach(list, i, a) {
                redisReply *r;
                json_object_del(a, "remaining");
                if (redis_ok(d) &&
                    (r = redis_reply(
                         d, redisCommand(d->redis, "GET %sstock:%s", prefix,
                                         json_string_value(
                                             json_object_get(a, "id")))))) {
                        if (r->type == REDIS_REPLY_STRING)
                                json_object_set_new(
                                    a, "remaining",
                                    json_integer(strtoll(r->str, NULL, 10)));
                        freeReplyObject(r);
                }
        }
}

/* activities: [{id, sku, price_cents, stock, remaining_mongo, start_ms,
 * end_ms, orders: {status: n}, accepted, holds: n, next_holds: [...]}]
 * (the sampler adds remaining, from Redis) */
static json_t *read_activities(dash_t *d, json_t *accepted, int64_t *total) {
        json_t *list = json_array(), *by_id = json_object();
        bson_t ids = BSON_INITIALIZER, *opts; /* ids: an array */
        char key[16];
        const char *k;
        mongoc_collection_t *acts =
            mongoc_database_get_collection(d->db, "activities");
        mongoc_collection_t *orders =
            mongoc_database_get_collection(d->db, "orders");
        bson_t *empty = bson_new(), *pipeline;
        mongoc_cursor_t *cur;
        const bson_t *doc;
        size_t i;
        json_t *a;

        /* The latest sales: the one in progress is among them. */
        opts =
            BCON_NEW("sort", "{", "start_ms", BCON_INT32(-1), "_id",
                     BCON_INT32(1), "}", "limit", BCON_INT64(MAX_ACTIVITIES));
        cur = mongoc_collection_find_with_opts(acts, empty, opts, NULL);
        bson_destroy(opts);
        while (mongoc_cursor_next(cur, &doc)) {
                a = json_pack(
                    "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:o, s:I, s:I, s:o}",
                    "id", bson_str(doc, "_id"), "sku", bson_str(doc, "sku"),
                    "price_cents", (json_int_t)bson_int(doc, "price_cents"),
                    "stock", (json_int_t)bson_int(doc, "stock"),
                    "remaining_mongo", (json_int_t)bson_int(doc, "remaining"),
                    "start_ms", (json_int_t)bson_int(doc, "start_ms"), "end_ms",
                    (json_int_t)bson_int(doc, "end_ms"), "orders",
                    json_object(), "accepted", (json_int_t)0, "holds",
                    (json_int_t)0, "next_holds", json_array());
                if (!a)
                        continue; /* a string that is not UTF-8 */
                json_array_append_new(list, a);
                json_object_set(by_id, bson_str(doc, "_id"), a);
                bson_uint32_to_string((uint32_t)json_array_size(list) - 1, &k,
                                      key, sizeof(key));
                BSON_APPEND_UTF8(&ids, k, bson_str(doc, "_id"));
        }
        cursor_done(d, cur);
        *total = json_array_size(list) < MAX_ACTIVITIES
                     ? (int64_t)json_array_size(list)
                     : mongoc_collection_count_documents(acts, empty, NULL,
                                                         NULL, NULL, NULL);
        if (*total < (int64_t)json_array_size(list)) /* count failed */
                *total = (int64_t)json_array_size(list);

        /* Placed orders of the shown sales by activity and status, in
         * one pass. */
        pipeline = BCON_NEW(
            "pipeline", "[", "{", "$match", "{", "activity_id", "{", "$in",
            BCON_ARRAY(&ids), "}", "}", "}", "{", "$group", "{", "_id", "{",
            "a", BCON_UTF8("$activity_id"), "s", BCON_UTF8("$status"), "}", "n",
            "{", "$sum", BCON_INT32(1), "}", "}", "}", "]");
        cur = mongoc_collection_aggregate(orders, MONGOC_QUERY_NONE, pipeline,
                                          NULL, NULL);
        while (mongoc_cursor_next(cur, &doc)) {
                bson_iter_t it, id;
                const char *act = "", *status = "";
                int64_t n = bson_int(doc, "n");
                if (bson_iter_init_find(&it, doc, "_id") &&
                    BSON_ITER_HOLDS_DOCUMENT(&it) &&
                    bson_iter_recurse(&it, &id))
                        while (bson_iter_next(&id)) {
                                if (!BSON_ITER_HOLDS_UTF8(&id))
                                        continue;
                                if (!strcmp(bson_iter_key(&id), "a"))
                                        act = bson_iter_utf8(&id, NULL);
                                else
                                        status = bson_iter_utf8(&id, NULL);
                        }
                if (!(a = json_object_get(by_id, act)))
                        continue;
                json_object_set_new(json_object_get(a, "orders"), status,
                                    json_integer(n));
                json_object_set_new(
                    a, "accepted",
                    json_integer(
                        json_integer_value(json_object_get(a, "accepted")) +
                        n));
                if (!strcmp(status, "PENDING_PAYMENT"))
                        json_object_set_new(a, "holds", json_integer(n));
        }
        cursor_done(d, cur);
        bson_destroy(pipeline);

        /* A hot sale can use up the shared read: a sale it left short
         * of its holds is read alone. */
        if (read_holds(d, orders, by_id, &ids) == HOLDS_READ)
                json_array_foreach(list, i, a) {
                        json_t *holds = json_object_get(a, "next_holds");
                        bson_t one = BSON_INITIALIZER;
                        json_int_t n =
                            json_integer_value(json_object_get(a, "holds"));
                        if (json_array_size(holds) >= HOLDS_SHOWN ||
                            (json_int_t)json_array_size(holds) >= n)
                                continue;
                        json_array_clear(holds);
                        BSON_APPEND_UTF8(
                            &one, "0",
                            json_string_value(json_object_get(a, "id")));
                        read_holds(d, orders, by_id, &one);
                        bson_destroy(&one);
                }

        json_array_foreach(list, i, a) {
                json_object_set(accepted,
                                json_string_value(json_object_get(a, "id")),
                                json_object_get(a, "accepted"));
        }
        bson_destroy(&ids);
        bson_destroy(empty);
        mongoc_collection_destroy(acts);
        mongoc_collection_destroy(orders);
        json_decref(by_id);
        return list;
}

/* The page's commissions: totals, earners and an empty "top" (for
 * read_top_earners). */
static json_t *commissions(int64_t pending, int64_t settled, int64_t reversed,
                           int64_t earners) {
        return json_pack(
            "{s:I, s:I, s:I, s:I, s:[]}", "pending_cents", (json_int_t)pending,
            "settled_cents", (json_int_t)settled, "reversed_cents",
            (json_int_t)reversed, "earners", (json_int_t)earners, "top");
}

/* Commission totals over earnings, with an empty "top" for
 * read_top_earners. They are summed here, not by $group: FerretDB 1.24
 * answered a $sum of settled_cents with 0 while the documents held 400
 * and 200 (found by tests/integration/test_dash). */
static json_t *read_commissions(dash_t *d) {
        mongoc_collection_t *earn =
            mongoc_database_get_collection(d->db, "earnings");
        bson_t *filter = bson_new();
        bson_t *opts = BCON_NEW("projection", "{", "pending_cents",
                                BCON_INT32(1), "settled_cents", BCON_INT32(1),
                                "reversed_cents", BCON_INT32(1), "}");
        mongoc_cursor_t *cur =
            mongoc_collection_find_with_opts(earn, filter, opts, NULL);
        const bson_t *doc;
        int64_t pending = 0, settled = 0, reversed = 0, users = 0;

        while (mongoc_cursor_next(cur, &doc)) {
                pending += bson_int(doc, "pending_cents");
                settled += bson_int(doc, "settled_cents");
                reversed += bson_int(doc, "reversed_cents");
                users++;
        }
        cursor_done(d, cur);
        bson_destroy(filter);
        bson_destroy(opts);
        mongoc_collection_destroy(earn);
        return commissions(pending, settled, reversed, users);
}

/* A leaderboard score in cents: a double, which Redis writes in exponent
 * form from 1e17 ("1e+17"), so not strtoll's. */
static json_int_t score_cents(const char *s) {
        double v = strtod(s, NULL);
        if (!(v > 0))
                return 0;
        return v >= 9223372036854775807.0 ? INT64_MAX : (json_int_t)v;
}

/* The top earners by settled commission, from the Redis leaderboard,
 * into c's "top". */
static void read_top_earners(dash_t *d, json_t *c) {
        size_t i;
        if (redis_ok(d)) {
                redisReply *r = redis_reply(
                    d, redisCommand(d->redis,
                                    "ZREVRANGE %sleaderboard:settled 0 %d "
                                    "WITHSCORES",
                                    ordo_config_get(d->conf, "redis.prefix"),
                                    TOP_EARNERS - 1));
                if (r && r->type == REDIS_REPLY_ARRAY)
                        for (i = 0; i + 1 < r->elements; i += 2)
                                json_array_append_new(
                                    json_object_get(c, "top"),
                                    json_pack(
                                        "{s:s, s:I}", "user_id",
                                        r->element[i]->str, "settled_cents",
                                        score_cents(r->element[i + 1]->str)));
                if (r)
                        freeReplyObject(r);
        }
}

/* ---- MongoDB's reader ---- */

/* One read of MongoDB's figures (mongo_view_t.figures), or NULL with
 * read_error saying why. */
static json_t *read_mongo(dash_t *d) {
        json_t *accepted = json_object(), *acts;
        int64_t total = 0;
        d->read_error[0] = '\0';
        acts = read_activities(d, accepted, &total);
        if (d->read_error[0]) {
                json_decref(acts);
                json_decref(accepted);
                return NULL;
        }
        return json_pack("{s:o, s:I, s:o, s:o}", "activities", acts,
                         "activities_total", (json_int_t)total, "accepted",
                         accepted, "commissions", read_commissions(d));
}

/* Reads MongoDB on the sampler's beat, until the stop. A read that
 * failed in read_commissions leaves its figures out too: they would
 * show commissions of 0. */
static void *mongo_reader(void *arg) {
        dash_t *d = arg;
        while (!ordo_stop) {
                int64_t next = ordo_monotonic_ms() + SAMPLE_MS;
                int64_t began = ordo_wall_ms();
                json_t *figures = read_mongo(d);
                if (figures && d->read_error[0]) {
                        json_decref(figures);
                        figures = NULL;
                }
                pthread_mutex_lock(&d->lock);
                snprintf(d->view.error, sizeof(d->view.error), "%s",
                         d->read_error);
                if (figures) {
                        json_decref(d->view.figures);
                        d->view.figures = figures;
                        d->view.figures_ms = began;
                }
                d->view.reads++;
                pthread_cond_broadcast(&d->read_ended);
                pthread_mutex_unlock(&d->lock);
                while (!ordo_stop && ordo_monotonic_ms() < next)
                        usleep(100000);
        }
        pthread_mutex_lock(&d->lock);
        d->view.ended = 1;
        pthread_cond_broadcast(&d->read_ended);
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

/* Waits until the reader has ended a read (more than `reads` of them)
 * or ended, for at most ms (on the monotonic clock, read_ended's), and
 * not past a stop if `stoppable`: 1 if it did. */
static int wait_reader(dash_t *d, int64_t reads, int64_t ms, int stoppable) {
        int64_t deadline = ordo_monotonic_ms() + ms;
        struct timespec until;
        int ok;
        pthread_mutex_lock(&d->lock);
        while (!(ok = d->view.reads > reads || d->view.ended) &&
               !(stoppable && ordo_stop) && ordo_monotonic_ms() < deadline) {
                /* in slices, to see a stop */
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_nsec += 100000000;
                if (until.tv_nsec >= 1000000000) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&d->read_ended, &d->lock, &until);
        }
        pthread_mutex_unlock(&d->lock);
        return ok;
}

/* ---- one sample ---- */

/* The sample's error of one store into the state (as key), logged as
 * the store fails and as it is read again: once an outage, whatever
 * libmongoc's words for it from one sample to the next. */
static void store_error(json_t *state, const char *store, const char *key,
                        const char *now, char *last, size_t last_size) {
        char q[512];
        int was_failing = last[0] != '\0';
        if (now[0])
                json_object_set_new(state, key, json_string(now));
        snprintf(last, last_size, "%s", now);
        if (!now[0] == !was_failing)
                return;
        if (now[0])
                ORDO_LOG(WARN, "dash",
                         "msg=\"cannot read %s: the page shows the error, "
                         "not an empty sale\" error=\"%s\"",
                         store, ordo_log_quote(q, sizeof(q), now));
        else
                ORDO_LOG(INFO, "dash", "msg=\"%s read again\"", store);
}

/* MongoDB's figures as its reader last read them, with what Redis gives
 * live added (remaining stock, top earners), and when they were read
 * (mongo_as_of_ms, *as_of; a slow MongoDB makes them older than the
 * sample: a 90,000-order sale took its reads 15-23 s). error (the
 * sample's) says why the last read failed; none read yet leave an empty
 * sale, with an error that says so. */
static void mongo_figures(dash_t *d, json_t *state, json_t **accepted,
                          int64_t *as_of, char *error, size_t error_size) {
        json_t *figures, *acts, *c;

        pthread_mutex_lock(&d->lock);
        figures = json_deep_copy(d->view.figures); /* NULL: none */
        *as_of = figures ? d->view.figures_ms : 0;
        snprintf(error, error_size, "%s", d->view.error);
        pthread_mutex_unlock(&d->lock);
        if (!error[0] && !figures)
                snprintf(error, error_size,
                         "MongoDB not read yet (its first read has not ended)");

        acts = json_object_get(figures, "activities");
        acts = acts ? json_incref(acts) : json_array();
        read_remaining(d, acts);
        json_object_set_new(state, "activities", acts);
        json_object_set_new(state, "activities_total",
                            json_integer(json_integer_value(
                                json_object_get(figures, "activities_total"))));
        json_decref(*accepted);
        *accepted = json_object_get(figures, "accepted");
        *accepted = *accepted ? json_incref(*accepted) : json_object();
        c = json_object_get(figures, "commissions");
        c = c ? json_incref(c) : commissions(0, 0, 0, 0);
        read_top_earners(d, c);
        json_object_set_new(state, "commissions", c);
        if (figures)
                json_object_set_new(state, "mongo_as_of_ms",
                                    json_integer(*as_of));
        json_decref(figures);
}

static void sample(dash_t *d) {
        json_t *state = json_object(), *procs = json_array(),
               *stages = json_object(), *rejections = json_object(),
               *latency = json_array(), *accepted = json_object(),
               *chart = json_array(), *lat, *window;
        char *list = strdup(ordo_config_get(d->conf, "dash.scrape")), *addr,
             *save = NULL, *doc, mongo_error[BSON_ERROR_BUFFER_SIZE];
        double rejected = 0;
        int64_t started = ordo_wall_ms(), accepted_ms;
        sample_t *s;
        int i, scraped = 1;

        for (addr = list ? strtok_r(list, ", ", &save) : NULL; addr;
             addr = strtok_r(NULL, ", ", &save))
                scraped &=
                    scrape(addr, procs, stages, rejections, latency, &rejected);
        free(list);
        /* A process that did not answer leaves its counts out: its
         * rejections are unknown, not none (an outside audit saw a
         * missed scrape drawn as the whole sale's rejections again). */
        if (!scraped)
                rejected = NAN;
        json_object_set_new(state, "scrape_complete", json_boolean(scraped));
        json_object_set_new(state, "now_ms", json_integer(ordo_wall_ms()));
        d->redis_error[0] = '\0';
        mongo_figures(d, state, &accepted, &accepted_ms, mongo_error,
                      sizeof(mongo_error));
        store_error(state, "MongoDB", "mongo_error", mongo_error,
                    d->last_mongo_error, sizeof(d->last_mongo_error));
        store_error(state, "Redis", "redis_error", d->redis_error,
                    d->last_redis_error, sizeof(d->last_redis_error));
        json_object_set_new(state, "sample_ms",
                            json_integer(ordo_wall_ms() - started));
        json_object_set_new(state, "processes", procs);
        json_object_set_new(state, "stages", stages);
        json_object_set_new(state, "rejections", rejections);
        pthread_mutex_lock(&d->lock);
        /* The last minute's decisions, not every one since each stage
         * process started: a burst an hour ago is not the sale now. */
        window = observed_since(
            latency,
            d->n_ring ? d->ring[(d->next_ring -
                                 (d->n_ring < LATENCY_WINDOW ? d->n_ring
                                                             : LATENCY_WINDOW) +
                                 HISTORY) %
                                HISTORY]
                            .latency
                      : NULL);
        lat = json_object();
        latency_quantile(lat, "p50", window, 0.5);
        latency_quantile(lat, "p95", window, 0.95);
        json_object_set_new(state, "latency", lat);
        json_decref(window);
        s = &d->ring[d->next_ring];
        json_decref(s->accepted);
        json_decref(s->latency);
        s->t_ms = ordo_wall_ms();
        s->accepted = accepted;
        s->accepted_ms = accepted_ms;
        s->rejected = rejected;
        s->latency = latency;
        d->next_ring = (d->next_ring + 1) % HISTORY;
        if (d->n_ring < HISTORY)
                d->n_ring++;
        for (i = 0; i < d->n_ring; i++) {
                sample_t *e =
                    &d->ring[(d->next_ring - d->n_ring + i + HISTORY) %
                             HISTORY];
                /* rejected null: unknown (JSON has no NaN) */
                json_array_append_new(
                    chart,
                    json_pack("{s:I, s:O, s:I, s:o}", "t_ms",
                              (json_int_t)e->t_ms, "accepted", e->accepted,
                              "accepted_ms", (json_int_t)e->accepted_ms,
                              "rejected",
                              isnan(e->rejected) ? json_null()
                                                 : json_real(e->rejected)));
        }
        json_object_set_new(state, "history", chart);
        doc = json_dumps(state, JSON_COMPACT);
        free(d->doc);
        d->doc = doc;
        d->doc_ms = ordo_wall_ms();
        pthread_mutex_unlock(&d->lock);
        json_decref(state);
}

/* ---- HTTP ---- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned status,
                               const char *type, const char *body, size_t len,
                               int must_free) {
        return (enum MHD_Result)ordo_http_reply(c, status, type, body, len,
                                                must_free);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
        dash_t *d = cls;
        char *doc;
        (void)version;
        (void)upload;
        (void)upload_size;
        (void)con_cls;
        if (strcmp(method, MHD_HTTP_METHOD_GET) &&
            strcmp(method, MHD_HTTP_METHOD_HEAD))
                return respond(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                               "use GET\n", 8, 0);
        if (!strcmp(url, "/")) {
                atomic_fetch_add(&d->pages, 1);
                return respond(c, MHD_HTTP_OK, "text/html; charset=utf-8",
                               ordo_dash_page, strlen(ordo_dash_page), 0);
        }
        if (!strcmp(url, "/api/state")) {
                /* age_ms, by the dash's clock when it answers: how old the
                 * sample is, whatever the reader's clock says. */
                pthread_mutex_lock(&d->lock);
                doc = NULL;
                if (d->doc && asprintf(&doc, "{\"age_ms\":%lld,%s",
                                       (long long)(ordo_wall_ms() - d->doc_ms),
                                       d->doc + 1) < 0)
                        doc = NULL;
                pthread_mutex_unlock(&d->lock);
                if (!doc)
                        return respond(
                            c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                            "{\"error\":\"first sample pending\"}", 32, 0);
                atomic_fetch_add(&d->states, 1);
                return respond(c, MHD_HTTP_OK, "application/json", doc,
                               strlen(doc), 1);
        }
        return respond(c, MHD_HTTP_NOT_FOUND, "text/plain",
                       "paths: /, /api/state\n", 21, 0);
}

int ordo_cmd_dash(ordo_config_t *conf, int argc, char **argv) {
        dash_t d;
        struct sockaddr_in sa;
        struct MHD_Daemon *mhd;
        ordo_metrics_server_t *metrics;
        pthread_t reader;
        char errstr[512];
        int i, failed;

        if (ordo_wants_help(argc, argv)) {
                printf("\n--listen HOST:PORT   the page's address (default "
                       "dash.listen, 127.0.0.1:8088)\n\n"
                       "A live page of a sale, built into the binary (no "
                       "CDN): per activity, stock\nand remaining, accepted "
                       "orders by status, holds waiting for payment, and\n"
                       "orders/s; for the sale, rejections by reason, "
                       "sent-to-decided latency,\ncommissions, top earners "
                       "and each stage's health and lag. It reads the\nread "
                       "models (mongo.*, redis.*) and the stages' metrics "
                       "(dash.scrape, a\ncomma-separated list of "
                       "metrics.listen addresses) every 2 s; the page\n"
                       "polls /api/state. Its own metrics: metrics.listen "
                       "(auto: 127.0.0.1:9471).\n");
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--listen")) {
                        const char *v =
                            ordo_option_value(argc, argv, &i, "dash");
                        if (!v)
                                return 2;
                        if (ordo_config_set(conf, "dash.listen", v, errstr,
                                            sizeof(errstr))) {
                                fprintf(stderr, "ordo dash: %s\n", errstr);
                                return 2;
                        }
                } else {
                        fprintf(stderr, "ordo dash: unknown argument %s\n",
                                argv[i]);
                        return 2;
                }
        }
        if (ordo_parse_listen(ordo_config_get(conf, "dash.listen"), &sa)) {
                fprintf(stderr,
                        "ordo dash: dash.listen: expected IPv4 HOST:PORT, got "
                        "\"%s\"\n",
                        ordo_config_get(conf, "dash.listen"));
                return 2;
        }
        memset(&d, 0, sizeof(d));
        d.conf = conf;
        pthread_mutex_init(&d.lock, NULL);
        {
                pthread_condattr_t ca;
                pthread_condattr_init(&ca);
                pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
                pthread_cond_init(&d.read_ended, &ca);
                pthread_condattr_destroy(&ca);
        }
        /* A read waits for MongoDB seconds at most, unless mongo.uri
         * says otherwise: the page shows mongo_error, not old figures. */
        if (!(d.mongo = ordo_mongo_client(ordo_config_get(conf, "mongo.uri"),
                                          &ordo_mongo_waits_reads, "ordo-dash",
                                          errstr, sizeof(errstr)))) {
                fprintf(stderr, "ordo dash: %s\n", errstr);
                return 2;
        }
        d.db = mongoc_client_get_database(d.mongo,
                                          ordo_config_get(conf, "mongo.db"));
        metrics = ordo_metrics_start(conf, "127.0.0.1:9471", &failed);
        errno = 0;
        mhd = failed ? NULL
                     : MHD_start_daemon(
                           MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                           0, NULL, NULL, on_request, &d,
                           MHD_OPTION_EXTERNAL_LOGGER, ordo_http_log, "dash",
                           MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                           MHD_OPTION_CONNECTION_LIMIT, 256u,
                           MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
        if (!mhd) {
                /* errno is bind's (libmicrohttpd closes the socket after) */
                if (!failed)
                        fprintf(stderr, "ordo dash: cannot listen on %s (%s)\n",
                                ordo_config_get(conf, "dash.listen"),
                                errno ? strerror(errno) : "address in use?");
                ordo_metrics_server_stop(metrics);
                mongoc_database_destroy(d.db);
                mongoc_client_destroy(d.mongo);
                pthread_cond_destroy(&d.read_ended);
                pthread_mutex_destroy(&d.lock);
                return 1;
        }
        {
                /* the port bound, not port 0 (an outside review found
                 * "127.0.0.1:0" logged) */
                char host[INET_ADDRSTRLEN];
                inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
                ORDO_LOG(INFO, "dash",
                         "msg=listening url=http://%s:%u/ scrape=%s", host,
                         ordo_http_bound_port(mhd, &sa),
                         ordo_config_get(conf, "dash.scrape"));
        }
        if ((failed = pthread_create(&reader, NULL, mongo_reader, &d)))
                ORDO_LOG(ERROR, "dash",
                         "msg=\"cannot start MongoDB's reader\" error=\"%s\"",
                         strerror(failed));
        /* the first sample with MongoDB's first figures, if they come
         * soon: not an empty sale for a moment */
        else
                wait_reader(&d, 0, FIRST_READ_MS, 1);
        while (!ordo_stop) {
                int64_t next = ordo_monotonic_ms() + SAMPLE_MS;
                sample(&d);
                d.samples++;
                ordo_health_beat("dash");
                while (!ordo_stop && ordo_monotonic_ms() < next)
                        usleep(100000);
        }
        MHD_stop_daemon(mhd);
        ordo_metrics_server_stop(metrics);
        /* A read held by a MongoDB that hangs is not waited out: the
         * process ends under it, at once (not exit(): the libraries'
         * clean-up, and this frame's end, would run under the reader). */
        if (!failed && !wait_reader(&d, INT64_MAX, 2000, 0)) {
                ORDO_LOG(WARN, "dash",
                         "msg=\"stopping during a MongoDB read that has not "
                         "ended: not waited for\" samples=%lld",
                         (long long)d.samples);
                fflush(NULL);
                _exit(0);
        }
        if (!failed)
                pthread_join(reader, NULL);
        ORDO_LOG(
            INFO, "dash", "msg=stopped samples=%lld pages=%llu states=%llu",
            (long long)d.samples, (unsigned long long)atomic_load(&d.pages),
            (unsigned long long)atomic_load(&d.states));
        for (i = 0; i < HISTORY; i++) {
                json_decref(d.ring[i].accepted);
                json_decref(d.ring[i].latency);
        }
        free(d.doc);
        if (d.redis)
                redisFree(d.redis);
        json_decref(d.view.figures);
        mongoc_database_destroy(d.db);
        mongoc_client_destroy(d.mongo);
        pthread_cond_destroy(&d.read_ended);
        pthread_mutex_destroy(&d.lock);
        return 0;
}
