/*
 * bench_lua_seckill - the classic flash-sale (秒杀) design for contrast with
 * ordo (issue #7): one atomic Redis Lua script per order, driven by one
 * pipelined hiredis connection. Fast, but nothing durable stands behind a
 * decision: no log, no replay, no exactly-once chain to payments.
 *
 * Workload it is tuned for: a few activities, one of them hot, and hundreds
 * of thousands of PlaceOrder commands read from ordo's JSON lines. Every
 * line is parsed and every Redis command's fixed part (EVALSHA, sha, keys)
 * is built before the clock starts, so the timed loop only formats four
 * small arguments, appends and reads replies.
 *
 * The script mirrors RULES.md's PlaceOrder checks in its order, with its
 * reason codes: UNKNOWN_ACTIVITY, order id already seen in the activity
 * (ignored, counted as "ignored"), INVALID_QTY, NOT_STARTED / ENDED,
 * LIMIT_EXCEEDED, SOLD_OUT / INSUFFICIENT_STOCK, else accepted. Like ordo
 * it remembers rejected order ids too, so a retry of a rejected order is
 * ignored, and the decisions of both engines on one workload are the same.
 * There is no cancellation or timeout here: the user's quantity is the sum
 * of the user's accepted orders.
 *
 * Keys, all under the prefix, with the activity in a hash tag so one
 * script call stays in one Redis Cluster slot:
 *   <prefix>{a:<id>}:info    hash limit, start, end
 *   <prefix>{a:<id>}:stock   integer, what is left
 *   <prefix>{a:<id>}:users   hash user -> accepted quantity
 *   <prefix>{a:<id>}:orders  hash order -> "<qty>:<user>" or "!<REASON>"
 * They are deleted at the end (SCAN + UNLINK of the prefix), whatever the
 * outcome once the connection works.
 *
 * Output: a summary on stderr, one JSON line on stdout (see usage()).
 */
#include <hiredis/hiredis.h>
#include <jansson.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_args.h"

#define ID_MAX       64 /* RULES.md "Units": identifiers are 1..64 bytes */
#define PREFIX_MAX   200
#define PIPELINE_MAX 1000000
#define SCAN_COUNT   "1000"
#define REASONS_MAX  32
/* Log-linear latency histogram: 64 sub-buckets per power of two of
 * nanoseconds, so a percentile is within 1.6 % of the true value. */
#define HIST_SUB     64
#define HIST_BUCKETS (HIST_SUB * 60)

/* KEYS info, stock, users, orders; ARGV order_id, user_id, qty, ts_ms.
 * Returns "OK", "DUPLICATE" or a reason code. Lua numbers are doubles:
 * exact for ts_ms and any plausible stock or quantity (< 2^53).
 * RULES.md checks a seen order id second; here the reads come first and one
 * HSETNX both checks and records the order id, which saves a call per
 * order. The decision is the same: the reads change nothing, and nothing
 * is written for a duplicate. */
static const char lua_seckill[] =
    "local a = redis.call('HMGET', KEYS[1], 'limit', 'start', 'end')\n"
    "if not a[1] then return 'UNKNOWN_ACTIVITY' end\n"
    "local qty = tonumber(ARGV[3])\n"
    "local ts = tonumber(ARGV[4])\n"
    "local r = 'OK'\n"
    "if qty < 1 then r = 'INVALID_QTY'\n"
    "elseif ts < tonumber(a[2]) then r = 'NOT_STARTED'\n"
    "elseif ts >= tonumber(a[3]) then r = 'ENDED'\n"
    "else\n"
    "  local had = tonumber(redis.call('HGET', KEYS[3], ARGV[2]) or '0')\n"
    "  if had + qty > tonumber(a[1]) then r = 'LIMIT_EXCEEDED'\n"
    "  else\n"
    "    local left = tonumber(redis.call('GET', KEYS[2]))\n"
    "    if left == 0 then r = 'SOLD_OUT'\n"
    "    elseif left < qty then r = 'INSUFFICIENT_STOCK' end\n"
    "  end\n"
    "end\n"
    "local v = r == 'OK' and (ARGV[3] .. ':' .. ARGV[2]) or ('!' .. r)\n"
    "if redis.call('HSETNX', KEYS[4], ARGV[1], v) == 0 then\n"
    "  return 'DUPLICATE'\n"
    "end\n"
    "if r == 'OK' then\n"
    "  redis.call('DECRBY', KEYS[2], qty)\n"
    "  redis.call('HINCRBY', KEYS[3], ARGV[2], qty)\n"
    "end\n"
    "return r\n";

/* The reason codes of RULES.md this script can return, always reported
 * (0 when unseen) so that JSON consumers find stable keys. */
static const char *const known_reasons[] = {
        "UNKNOWN_ACTIVITY", "INVALID_QTY", "NOT_STARTED",        "ENDED",
        "LIMIT_EXCEEDED",   "SOLD_OUT",    "INSUFFICIENT_STOCK",
};

typedef struct activity_s {
        char *id;
        int created; /* a valid CreateActivity was seen */
        long long stock, limit, start_ms, end_ms;
        char *keys[4]; /* info, stock, users, orders */
        char *hdr;     /* RESP of EVALSHA, sha, 4 and the keys */
        size_t hdr_len;
        long long acc_orders, acc_qty; /* from the replies */
} activity_t;

typedef struct order_s {
        char *order_id, *user_id;
        uint32_t act; /* index into activities */
        long long qty, ts_ms;
        int has_ts;
} order_t;

typedef struct workload_s {
        activity_t *acts;
        size_t n_acts, cap_acts;
        uint32_t *slots; /* open addressing: activity index + 1, 0 empty */
        size_t n_slots;
        order_t *orders;
        size_t n_orders, cap_orders;
        size_t skipped, invalid_acts, dup_acts, lines;
} workload_t;

typedef struct reason_count_s {
        char name[48];
        long long n;
} reason_count_t;

typedef struct hist_s {
        uint64_t b[HIST_BUCKETS];
        uint64_t n, max_ns;
} hist_t;

typedef struct opts_s {
        const char *host;
        int port;
        char prefix[PREFIX_MAX + 1];
        long pipeline;
        int stamp_ts;
        const char *path;
} opts_t;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig) {
        (void)sig;
        interrupted = 1;
}

static void usage(FILE *f) {
        fprintf(
            f,
            "usage: bench_lua_seckill [--host H] [--port P] [--prefix "
            "KEYPREFIX]\n"
            "                         [--pipeline N] [--stamp-ts] "
            "WORKLOAD.jsonl\n"
            "\n"
            "Decides every PlaceOrder of an ordo JSON-lines workload with the "
            "classic\n"
            "Redis Lua seckill script (stock check, per-user limit, decrement, "
            "buyer\n"
            "recorded), keeping N EVALSHA calls in flight on one hiredis "
            "connection.\n"
            "\n"
            "  --host H        Redis host (ORDO_REDIS_HOST, else 127.0.0.1)\n"
            "  --port P        Redis port (ORDO_REDIS_PORT, else 6379)\n"
            "  --prefix K      key prefix (default \"luabench:<pid>:\"); keys "
            "under it\n"
            "                  must not exist, and are deleted at the end\n"
            "  --pipeline N    requests in flight (default 256, 1..%d)\n"
            "  --stamp-ts      a PlaceOrder without ts_ms gets the wall clock "
            "when it\n"
            "                  is sent (as the gateway does); without this "
            "flag a\n"
            "                  missing ts_ms is an input error\n"
            "  -h, --help      this text\n"
            "\n"
            "Input: CreateActivity lines (activity_id, stock, per_user_limit,\n"
            "start_ms, end_ms) and PlaceOrder lines (order_id, activity_id, "
            "user_id,\n"
            "qty, ts_ms) are used; other command types are counted as skipped. "
            "All\n"
            "activities are created before the first order is sent. A "
            "CreateActivity\n"
            "that RULES.md rejects (INVALID_ACTIVITY, DUPLICATE_ACTIVITY) "
            "creates\n"
            "nothing, so its orders are UNKNOWN_ACTIVITY, as in ordo.\n"
            "\n"
            "Output: one JSON line on stdout:\n"
            "  decisions        PlaceOrder commands sent (= accepted + "
            "rejected +\n"
            "                   ignored)\n"
            "  accepted         orders accepted; rejected: {REASON: count}\n"
            "  ignored          order ids already seen in their activity (no "
            "decision\n"
            "                   in ordo either)\n"
            "  seconds          first request appended to last reply read\n"
            "  decisions_per_s  decisions / seconds\n"
            "  p50_us p99_us p999_us max_us  per request, append to reply\n"
            "  pipeline, skipped_lines, activities\n"
            "  checks           \"ok\", or \"FAILED\" (then the exit status is "
            "1)\n"
            "The end state is read back from Redis: for every activity stock "
            "left\n"
            ">= 0, stock left + accepted quantity == initial stock (counted "
            "from the\n"
            "orders hash and from the users hash), every user within the "
            "limit.\n"
            "\n"
            "Exit status: 0 ok, 1 end-state check failed, 2 usage or input "
            "error,\n"
            "3 Redis error.\n",
            PIPELINE_MAX);
}

static void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);

        if (!p) {
                fprintf(stderr, "bench_lua_seckill: out of memory\n");
                exit(3);
        }
        return p;
}

static void *xrealloc(void *p, size_t n) {
        p = realloc(p, n);
        if (!p) {
                fprintf(stderr, "bench_lua_seckill: out of memory\n");
                exit(3);
        }
        return p;
}

static char *xstrndup(const char *s, size_t n) {
        char *d = xmalloc(n + 1);

        memcpy(d, s, n);
        d[n] = '\0';
        return d;
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long long wall_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Latency histogram
 */

static size_t hist_bucket(uint64_t v) {
        int e;
        size_t i;

        if (v < HIST_SUB)
                return (size_t)v;
        e = 63 - __builtin_clzll(v); /* >= 6 */
        i = (size_t)(e - 5) * HIST_SUB + ((v >> (e - 6)) & (HIST_SUB - 1));
        return i < HIST_BUCKETS ? i : HIST_BUCKETS - 1;
}

/* The middle of bucket i, in ns. */
static double hist_value(size_t i) {
        size_t e;
        double lo, w;

        if (i < HIST_SUB)
                return (double)i;
        e = i / HIST_SUB + 5;
        w = (double)(1ull << (e - 6));
        lo = (double)(1ull << e) + (double)(i % HIST_SUB) * w;
        return lo + w / 2;
}

static void hist_add(hist_t *h, uint64_t v) {
        h->b[hist_bucket(v)]++;
        h->n++;
        if (v > h->max_ns)
                h->max_ns = v;
}

/* The q-quantile in microseconds (nearest rank). */
static double hist_quantile_us(const hist_t *h, double q) {
        uint64_t rank, seen = 0;
        size_t i;

        if (!h->n)
                return 0;
        rank = (uint64_t)(q * (double)h->n + 0.999999);
        if (rank < 1)
                rank = 1;
        for (i = 0; i < HIST_BUCKETS; i++) {
                seen += h->b[i];
                if (seen >= rank) {
                        double v = hist_value(i);
                        /* never above the true maximum */
                        if (v > (double)h->max_ns)
                                v = (double)h->max_ns;
                        return v / 1000.0;
                }
        }
        return (double)h->max_ns / 1000.0;
}

/*
 * Workload loading
 */

static uint64_t fnv1a(const char *s) {
        uint64_t h = 1469598103934665603ull;

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ull;
        return h;
}

/* Index of activity id, added (not created) when new. */
static uint32_t activity_ref(workload_t *w, const char *id) {
        size_t i, mask;

        if (w->n_acts * 2 >= w->n_slots) {
                size_t n = w->n_slots ? w->n_slots * 2 : 64, j;
                uint32_t *s = calloc(n, sizeof(*s));

                if (!s) {
                        fprintf(stderr, "bench_lua_seckill: out of memory\n");
                        exit(3);
                }
                for (j = 0; j < w->n_acts; j++) {
                        i = fnv1a(w->acts[j].id) & (n - 1);
                        while (s[i])
                                i = (i + 1) & (n - 1);
                        s[i] = (uint32_t)j + 1;
                }
                free(w->slots);
                w->slots = s;
                w->n_slots = n;
        }
        mask = w->n_slots - 1;
        for (i = fnv1a(id) & mask; w->slots[i]; i = (i + 1) & mask)
                if (!strcmp(w->acts[w->slots[i] - 1].id, id))
                        return w->slots[i] - 1;
        if (w->n_acts == w->cap_acts) {
                w->cap_acts = w->cap_acts ? w->cap_acts * 2 : 16;
                w->acts = xrealloc(w->acts, w->cap_acts * sizeof(*w->acts));
        }
        memset(&w->acts[w->n_acts], 0, sizeof(*w->acts));
        w->acts[w->n_acts].id = xstrndup(id, strlen(id));
        w->slots[i] = (uint32_t)w->n_acts + 1;
        return (uint32_t)w->n_acts++;
}

/* A required identifier; NULL with why set. */
static const char *get_id(json_t *o, const char *name, char *why,
                          size_t why_size) {
        json_t *v = json_object_get(o, name);
        size_t len;

        if (!v) {
                snprintf(why, why_size, "field %s: missing", name);
                return NULL;
        }
        if (!json_is_string(v)) {
                snprintf(why, why_size, "field %s: not a string", name);
                return NULL;
        }
        len = json_string_length(v);
        if (len < 1 || len > ID_MAX) {
                snprintf(why, why_size,
                         "field %s: an identifier is 1..%d bytes, not %zu",
                         name, ID_MAX, len);
                return NULL;
        }
        if (memchr(json_string_value(v), '\0', len)) {
                snprintf(why, why_size, "field %s: contains NUL", name);
                return NULL;
        }
        return json_string_value(v);
}

/* A required (or, with has, optional) integer; -1 with why set. */
static int get_int(json_t *o, const char *name, long long *out, int *has,
                   char *why, size_t why_size) {
        json_t *v = json_object_get(o, name);

        if (!v) {
                if (has) {
                        *has = 0;
                        return 0;
                }
                snprintf(why, why_size, "field %s: missing", name);
                return -1;
        }
        if (!json_is_integer(v)) {
                snprintf(why, why_size, "field %s: not an integer", name);
                return -1;
        }
        *out = json_integer_value(v);
        if (has)
                *has = 1;
        return 0;
}

static int load_activity(workload_t *w, json_t *o, char *why, size_t why_size) {
        long long stock, limit, start, end;
        const char *id = get_id(o, "activity_id", why, why_size);
        activity_t *a;
        uint32_t idx;

        if (!id || get_int(o, "stock", &stock, NULL, why, why_size) ||
            get_int(o, "per_user_limit", &limit, NULL, why, why_size) ||
            get_int(o, "start_ms", &start, NULL, why, why_size) ||
            get_int(o, "end_ms", &end, NULL, why, why_size))
                return -1;
        idx = activity_ref(w, id); /* may move w->acts */
        a = &w->acts[idx];
        if (a->created) {
                w->dup_acts++; /* DUPLICATE_ACTIVITY: the first one holds */
                return 0;
        }
        /* The INVALID_ACTIVITY conditions this benchmark can see. */
        if (stock < 1 || limit < 1 || start >= end) {
                w->invalid_acts++;
                return 0;
        }
        a->created = 1;
        a->stock = stock;
        a->limit = limit;
        a->start_ms = start;
        a->end_ms = end;
        return 0;
}

static int load_order(workload_t *w, json_t *o, int stamp_ts, char *why,
                      size_t why_size) {
        const char *oid = get_id(o, "order_id", why, why_size);
        const char *uid = oid ? get_id(o, "user_id", why, why_size) : NULL;
        const char *aid = uid ? get_id(o, "activity_id", why, why_size) : NULL;
        order_t *r;
        long long qty, ts = 0;
        int has_ts;

        if (!aid || get_int(o, "qty", &qty, NULL, why, why_size) ||
            get_int(o, "ts_ms", &ts, &has_ts, why, why_size))
                return -1;
        if (!has_ts && !stamp_ts) {
                snprintf(why, why_size,
                         "field ts_ms: missing (the activity window needs "
                         "it; or run with --stamp-ts)");
                return -1;
        }
        if (w->n_orders == w->cap_orders) {
                w->cap_orders = w->cap_orders ? w->cap_orders * 2 : 4096;
                w->orders =
                    xrealloc(w->orders, w->cap_orders * sizeof(*w->orders));
        }
        r = &w->orders[w->n_orders++];
        r->order_id = xstrndup(oid, strlen(oid));
        r->user_id = xstrndup(uid, strlen(uid));
        r->act = activity_ref(w, aid);
        r->qty = qty;
        r->ts_ms = ts;
        r->has_ts = has_ts;
        return 0;
}

/* 0, or -1 after printing the line number and reason. */
static int load_workload(workload_t *w, const char *path, int stamp_ts) {
        FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
        char *line = NULL, why[256];
        size_t cap = 0;
        ssize_t len;
        int rc = 0;

        if (!f) {
                fprintf(stderr, "bench_lua_seckill: %s: %s\n", path,
                        strerror(errno));
                return -1;
        }
        while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
                json_error_t jerr;
                json_t *o, *t;
                const char *type;
                ssize_t k;

                w->lines++;
                for (k = 0; k < len && strchr(" \t\r\n", line[k]); k++)
                        ;
                if (k == len)
                        continue; /* blank line */
                o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES,
                               &jerr);
                if (!o) {
                        snprintf(why, sizeof(why), "not JSON: %s (column %d)",
                                 jerr.text, jerr.column);
                        rc = -1;
                        break;
                }
                t = json_object_get(o, "type");
                if (!json_is_object(o)) {
                        snprintf(why, sizeof(why), "not a JSON object");
                        rc = -1;
                } else if (!json_is_string(t)) {
                        snprintf(why, sizeof(why),
                                 "field type: missing or not a string");
                        rc = -1;
                } else {
                        type = json_string_value(t);
                        if (!strcmp(type, "CreateActivity"))
                                rc = load_activity(w, o, why, sizeof(why));
                        else if (!strcmp(type, "PlaceOrder"))
                                rc = load_order(w, o, stamp_ts, why,
                                                sizeof(why));
                        else
                                w->skipped++;
                }
                json_decref(o);
        }
        if (rc == 0 && ferror(f)) {
                fprintf(stderr, "bench_lua_seckill: %s: read error: %s\n", path,
                        strerror(errno));
                rc = -2;
        }
        if (rc == -1)
                fprintf(stderr, "bench_lua_seckill: %s:%zu: %s\n", path,
                        w->lines, why);
        free(line);
        if (f != stdin)
                fclose(f);
        return rc ? -1 : 0;
}

static void workload_free(workload_t *w) {
        size_t i;
        int k;

        for (i = 0; i < w->n_acts; i++) {
                free(w->acts[i].id);
                free(w->acts[i].hdr);
                for (k = 0; k < 4; k++)
                        free(w->acts[i].keys[k]);
        }
        for (i = 0; i < w->n_orders; i++) {
                free(w->orders[i].order_id);
                free(w->orders[i].user_id);
        }
        free(w->acts);
        free(w->slots);
        free(w->orders);
}

/*
 * RESP building: the timed loop appends preformatted commands, so hiredis
 * spends no time in its printf-like formatter.
 */

static char *resp_bulk(char *p, const char *s, size_t len) {
        p += sprintf(p, "$%zu\r\n", len);
        memcpy(p, s, len);
        p += len;
        *p++ = '\r';
        *p++ = '\n';
        return p;
}

static char *resp_ll(char *p, long long v) {
        char num[24];
        int n = snprintf(num, sizeof(num), "%lld", v);

        return resp_bulk(p, num, (size_t)n);
}

static void build_headers(workload_t *w, const char *prefix, const char *sha) {
        static const char *const suffix[4] = { ":info", ":stock", ":users",
                                               ":orders" };
        size_t i, cap;
        int k;
        char *p;

        for (i = 0; i < w->n_acts; i++) {
                activity_t *a = &w->acts[i];

                cap = 64 + 40;
                for (k = 0; k < 4; k++) {
                        size_t n = strlen(prefix) + strlen(a->id) + 16;
                        a->keys[k] = xmalloc(n);
                        snprintf(a->keys[k], n, "%s{a:%s}%s", prefix, a->id,
                                 suffix[k]);
                        cap += strlen(a->keys[k]) + 32;
                }
                a->hdr = p = xmalloc(cap);
                p += sprintf(p, "*11\r\n");
                p = resp_bulk(p, "EVALSHA", 7);
                p = resp_bulk(p, sha, strlen(sha));
                p = resp_bulk(p, "4", 1);
                for (k = 0; k < 4; k++)
                        p = resp_bulk(p, a->keys[k], strlen(a->keys[k]));
                a->hdr_len = (size_t)(p - a->hdr);
        }
}

/* Into buf (at least hdr_len + 2 * ID_MAX + 128 bytes); its length. */
static size_t build_order(const workload_t *w, const order_t *o, char *buf) {
        const activity_t *a = &w->acts[o->act];
        char *p = buf;

        memcpy(p, a->hdr, a->hdr_len);
        p += a->hdr_len;
        p = resp_bulk(p, o->order_id, strlen(o->order_id));
        p = resp_bulk(p, o->user_id, strlen(o->user_id));
        p = resp_ll(p, o->qty);
        p = resp_ll(p, o->has_ts ? o->ts_ms : wall_ms());
        return (size_t)(p - buf);
}

/*
 * Redis helpers
 */

/* A reply of the expected type, or NULL after printing why. */
static redisReply *expect(redisContext *c, redisReply *r, int type,
                          const char *what) {
        if (!r) {
                fprintf(stderr, "bench_lua_seckill: %s: %s\n", what,
                        c->errstr[0] ? c->errstr : "no reply");
                return NULL;
        }
        if (r->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "bench_lua_seckill: %s: Redis error: %s\n",
                        what, r->str);
                freeReplyObject(r);
                return NULL;
        }
        if (type >= 0 && r->type != type) {
                fprintf(stderr,
                        "bench_lua_seckill: %s: unexpected reply type %d\n",
                        what, r->type);
                freeReplyObject(r);
                return NULL;
        }
        return r;
}

/* The prefix as a SCAN MATCH pattern: glob characters escaped, then "*". */
static void glob_prefix(const char *prefix, char *out, size_t size) {
        size_t j = 0;

        for (; *prefix && j + 3 < size; prefix++) {
                if (strchr("*?[]\\", *prefix))
                        out[j++] = '\\';
                out[j++] = *prefix;
        }
        out[j++] = '*';
        out[j] = '\0';
}

/* Walks every key under prefix; with del, UNLINKs them. The number of keys
 * found (stopping at the first when !del), or -1 on error. */
static long long scan_prefix(redisContext *c, const char *prefix, int del) {
        char pattern[2 * PREFIX_MAX + 2], cursor[32] = "0";
        long long found = 0;

        glob_prefix(prefix, pattern, sizeof(pattern));
        do {
                redisReply *r =
                    expect(c,
                           redisCommand(c, "SCAN %s MATCH %s COUNT " SCAN_COUNT,
                                        cursor, pattern),
                           REDIS_REPLY_ARRAY, "SCAN");
                redisReply *keys;
                size_t i;

                if (!r)
                        return -1;
                if (r->elements != 2 ||
                    r->element[0]->type != REDIS_REPLY_STRING ||
                    r->element[1]->type != REDIS_REPLY_ARRAY) {
                        fprintf(stderr, "bench_lua_seckill: SCAN: odd reply\n");
                        freeReplyObject(r);
                        return -1;
                }
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                keys = r->element[1];
                found += (long long)keys->elements;
                if (del && keys->elements) {
                        const char **argv =
                            xmalloc((keys->elements + 1) * sizeof(*argv));
                        size_t *lens =
                            xmalloc((keys->elements + 1) * sizeof(*lens));
                        redisReply *u;

                        argv[0] = "UNLINK";
                        lens[0] = 6;
                        for (i = 0; i < keys->elements; i++) {
                                argv[i + 1] = keys->element[i]->str;
                                lens[i + 1] = keys->element[i]->len;
                        }
                        u = expect(c,
                                   redisCommandArgv(c, (int)keys->elements + 1,
                                                    argv, lens),
                                   REDIS_REPLY_INTEGER, "UNLINK");
                        free(argv);
                        free(lens);
                        if (!u) {
                                freeReplyObject(r);
                                return -1;
                        }
                        freeReplyObject(u);
                }
                freeReplyObject(r);
                if (!del && found)
                        break;
        } while (strcmp(cursor, "0"));
        return found;
}

static int create_activities(redisContext *c, const workload_t *w) {
        size_t i, sent = 0;
        int rc = 0;

        for (i = 0; i < w->n_acts; i++) {
                const activity_t *a = &w->acts[i];

                if (!a->created)
                        continue;
                redisAppendCommand(c, "HSET %s limit %lld start %lld end %lld",
                                   a->keys[0], a->limit, a->start_ms,
                                   a->end_ms);
                redisAppendCommand(c, "SET %s %lld", a->keys[1], a->stock);
                sent += 2;
        }
        for (i = 0; i < sent; i++) {
                void *r = NULL;

                if (redisGetReply(c, &r) != REDIS_OK)
                        r = NULL;
                r = expect(c, r, -1, "creating activities");
                if (!r)
                        return -1; /* the connection is unusable now */
                freeReplyObject(r);
        }
        return rc;
}

/*
 * The timed run
 */

static void count_reason(reason_count_t *rs, size_t *n, const char *name,
                         size_t len) {
        size_t i;

        for (i = 0; i < *n; i++)
                if (strlen(rs[i].name) == len && !memcmp(rs[i].name, name, len))
                        break;
        if (i == *n) {
                if (*n == REASONS_MAX)
                        i = *n - 1; /* cannot happen with this script */
                else {
                        snprintf(rs[i].name, sizeof(rs[i].name), "%.*s",
                                 (int)len, name);
                        rs[i].n = 0;
                        (*n)++;
                }
        }
        rs[i].n++;
}

typedef struct result_s {
        long long accepted, ignored, rejected;
        reason_count_t reasons[REASONS_MAX];
        size_t n_reasons;
        double seconds;
        hist_t hist;
} result_t;

/* Keeps pipeline requests in flight: append while there is room, then
 * read one reply. hiredis sends what was appended only when it must wait
 * for a reply, so the requests go out in batches, as a pipelining client
 * would send them; the latency counts the wait in its buffer too. */
static int run(redisContext *c, workload_t *w, long pipeline, result_t *res) {
        size_t hdr_max = 0, next = 0, done = 0, i;
        uint64_t *t0 = xmalloc((size_t)pipeline * sizeof(*t0)), start;
        char *buf;
        int rc = 0;

        for (i = 0; i < w->n_acts; i++)
                if (w->acts[i].hdr_len > hdr_max)
                        hdr_max = w->acts[i].hdr_len;
        buf = xmalloc(hdr_max + 2 * ID_MAX + 128);
        for (i = 0; i < sizeof(known_reasons) / sizeof(*known_reasons); i++)
                snprintf(res->reasons[res->n_reasons++].name,
                         sizeof(res->reasons[0].name), "%s", known_reasons[i]);

        start = now_ns();
        while (done < w->n_orders) {
                redisReply *r = NULL;
                const order_t *o;
                uint64_t t;

                /* Interrupted: send no more, read what is in flight, then
                 * the keys are deleted as after a normal run. */
                if (interrupted && done == next) {
                        fprintf(stderr, "bench_lua_seckill: interrupted\n");
                        rc = -1;
                        goto out;
                }
                while (!interrupted && next < w->n_orders &&
                       next - done < (size_t)pipeline) {
                        size_t len = build_order(w, &w->orders[next], buf);

                        t0[next % (size_t)pipeline] = now_ns();
                        if (redisAppendFormattedCommand(c, buf, len) !=
                            REDIS_OK) {
                                fprintf(stderr, "bench_lua_seckill: %s\n",
                                        c->errstr);
                                rc = -1;
                                goto out;
                        }
                        next++;
                }
                if (redisGetReply(c, (void **)&r) != REDIS_OK)
                        r = NULL;
                t = now_ns();
                o = &w->orders[done];
                if (!expect(c, r, -1, "EVALSHA")) {
                        fprintf(stderr,
                                "bench_lua_seckill: at order %zu (%s)\n",
                                done + 1, o->order_id);
                        rc = -1;
                        goto out;
                }
                hist_add(&res->hist, t - t0[done % (size_t)pipeline]);
                if (r->type != REDIS_REPLY_STRING &&
                    r->type != REDIS_REPLY_STATUS) {
                        fprintf(stderr,
                                "bench_lua_seckill: EVALSHA: reply type %d\n",
                                r->type);
                        freeReplyObject(r);
                        rc = -1;
                        goto out;
                }
                if (r->len == 2 && !memcmp(r->str, "OK", 2)) {
                        res->accepted++;
                        w->acts[o->act].acc_orders++;
                        w->acts[o->act].acc_qty += o->qty;
                } else if (r->len == 9 && !memcmp(r->str, "DUPLICATE", 9)) {
                        res->ignored++;
                } else {
                        res->rejected++;
                        count_reason(res->reasons, &res->n_reasons, r->str,
                                     r->len);
                }
                freeReplyObject(r);
                done++;
        }
        res->seconds = (double)(now_ns() - start) / 1e9;
out:
        free(buf);
        free(t0);
        return rc;
}

/*
 * End-state checks, from what Redis holds
 */

typedef struct hscan_sum_s {
        long long entries, accepted, qty_sum, over_limit, bad;
} hscan_sum_t;

/* Sums a users hash (value = quantity) or an orders hash (value =
 * "<qty>:<user>" or "!<REASON>"). */
static int hscan_sum(redisContext *c, const char *key, int orders,
                     long long limit, hscan_sum_t *s) {
        char cursor[32] = "0";

        memset(s, 0, sizeof(*s));
        do {
                redisReply *r =
                    expect(c,
                           redisCommand(c, "HSCAN %s %s COUNT " SCAN_COUNT, key,
                                        cursor),
                           REDIS_REPLY_ARRAY, "HSCAN");
                redisReply *kv;
                size_t i;

                if (!r)
                        return -1;
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                kv = r->element[1];
                for (i = 0; i + 1 < kv->elements; i += 2) {
                        const char *v = kv->element[i + 1]->str;
                        char *end;
                        long long q;

                        s->entries++;
                        if (orders && v[0] == '!')
                                continue;
                        errno = 0;
                        q = strtoll(v, &end, 10);
                        if (errno || end == v || q < 1 ||
                            (orders ? *end != ':' : *end != '\0')) {
                                s->bad++;
                                continue;
                        }
                        s->accepted++;
                        s->qty_sum += q;
                        if (!orders && q > limit)
                                s->over_limit++;
                }
                freeReplyObject(r);
        } while (strcmp(cursor, "0"));
        return 0;
}

/* Number of violations (printed), or -1 on a Redis error. */
static int check_end_state(redisContext *c, const workload_t *w) {
        int bad = 0;
        size_t i;

#define FAIL(...)                                                              \
        do {                                                                   \
                fprintf(stderr,                                                \
                        "bench_lua_seckill: CHECK FAILED: " __VA_ARGS__);      \
                bad++;                                                         \
        } while (0)

        for (i = 0; i < w->n_acts; i++) {
                const activity_t *a = &w->acts[i];
                hscan_sum_t users, orders;
                redisReply *r;
                long long left;

                if (!a->created) {
                        if (a->acc_orders)
                                FAIL("activity %s was never created but "
                                     "accepted %lld orders\n",
                                     a->id, a->acc_orders);
                        continue;
                }
                r = expect(c, redisCommand(c, "GET %s", a->keys[1]),
                           REDIS_REPLY_STRING, "GET stock");
                if (!r)
                        return -1;
                left = strtoll(r->str, NULL, 10);
                freeReplyObject(r);
                if (hscan_sum(c, a->keys[2], 0, a->limit, &users) ||
                    hscan_sum(c, a->keys[3], 1, a->limit, &orders))
                        return -1;
                if (left < 0)
                        FAIL("activity %s: stock left %lld < 0\n", a->id, left);
                if (left + orders.qty_sum != a->stock)
                        FAIL("activity %s: stock left %lld + accepted qty "
                             "%lld (orders hash) != initial stock %lld\n",
                             a->id, left, orders.qty_sum, a->stock);
                if (users.qty_sum != orders.qty_sum)
                        FAIL("activity %s: users hash holds %lld units, "
                             "orders hash %lld\n",
                             a->id, users.qty_sum, orders.qty_sum);
                if (users.over_limit)
                        FAIL("activity %s: %lld users over the limit %lld\n",
                             a->id, users.over_limit, a->limit);
                if (users.bad || orders.bad)
                        FAIL("activity %s: %lld malformed hash values\n", a->id,
                             users.bad + orders.bad);
                if (orders.accepted != a->acc_orders ||
                    orders.qty_sum != a->acc_qty)
                        FAIL("activity %s: Redis holds %lld accepted orders "
                             "(%lld units), the replies said %lld (%lld)\n",
                             a->id, orders.accepted, orders.qty_sum,
                             a->acc_orders, a->acc_qty);
                fprintf(stderr,
                        "  activity %-20s stock %lld, accepted %lld orders / "
                        "%lld units, left %lld, %lld order ids seen, %lld "
                        "buyers\n",
                        a->id, a->stock, orders.accepted, orders.qty_sum, left,
                        orders.entries, users.entries);
        }
#undef FAIL
        return bad;
}

/*
 * main
 */

static int parse_args(int argc, char **argv, opts_t *o) {
        const char *env;
        long v;
        int i;

        o->host = (env = getenv("ORDO_REDIS_HOST")) && *env ? env : "127.0.0.1";
        o->port = 6379;
        if ((env = getenv("ORDO_REDIS_PORT")) && *env) {
                if (parse_long(env, 1, 65535, &v)) {
                        fprintf(stderr, "bench_lua_seckill: ORDO_REDIS_PORT: "
                                        "not a port\n");
                        return -1;
                }
                o->port = (int)v;
        }
        snprintf(o->prefix, sizeof(o->prefix), "luabench:%ld:", (long)getpid());
        o->pipeline = 256;
        o->path = NULL;
        for (i = 1; i < argc; i++) {
                const char *a = argv[i],
                           *val = i + 1 < argc ? argv[i + 1] : NULL;
                int takes = 1;

                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        usage(stdout);
                        exit(0);
                } else if (!strcmp(a, "--stamp-ts")) {
                        o->stamp_ts = 1;
                        takes = 0;
                } else if (!strcmp(a, "--host") || !strcmp(a, "--port") ||
                           !strcmp(a, "--prefix") || !strcmp(a, "--pipeline")) {
                        if (!val) {
                                fprintf(stderr,
                                        "bench_lua_seckill: %s needs a "
                                        "value\n",
                                        a);
                                return -1;
                        }
                        if (!strcmp(a, "--host"))
                                o->host = val;
                        else if (!strcmp(a, "--port")) {
                                if (parse_long(val, 1, 65535, &v)) {
                                        fprintf(stderr,
                                                "bench_lua_seckill: --port: "
                                                "1..65535\n");
                                        return -1;
                                }
                                o->port = (int)v;
                        } else if (!strcmp(a, "--prefix")) {
                                if (!*val || strlen(val) > PREFIX_MAX) {
                                        fprintf(stderr,
                                                "bench_lua_seckill: --prefix: "
                                                "1..%d bytes\n",
                                                PREFIX_MAX);
                                        return -1;
                                }
                                snprintf(o->prefix, sizeof(o->prefix), "%s",
                                         val);
                        } else if (parse_long(val, 1, PIPELINE_MAX,
                                              &o->pipeline)) {
                                fprintf(stderr,
                                        "bench_lua_seckill: --pipeline: "
                                        "1..%d\n",
                                        PIPELINE_MAX);
                                return -1;
                        }
                        i++;
                        takes = 0;
                } else if (a[0] == '-' && a[1]) {
                        fprintf(stderr,
                                "bench_lua_seckill: unknown option %s "
                                "(--help)\n",
                                a);
                        return -1;
                }
                if (takes) {
                        if (o->path) {
                                fprintf(stderr, "bench_lua_seckill: one "
                                                "workload file only\n");
                                return -1;
                        }
                        o->path = a;
                }
        }
        if (!o->path) {
                usage(stderr);
                return -1;
        }
        return 0;
}

static void print_json(const opts_t *o, const workload_t *w,
                       const result_t *res, const char *checks) {
        json_t *j = json_object(), *rej = json_object();
        long long decisions = res->accepted + res->rejected + res->ignored;
        char *s;
        size_t i;

        for (i = 0; i < res->n_reasons; i++)
                json_object_set_new(rej, res->reasons[i].name,
                                    json_integer(res->reasons[i].n));
        json_object_set_new(j, "decisions", json_integer(decisions));
        json_object_set_new(j, "accepted", json_integer(res->accepted));
        json_object_set_new(j, "rejected", rej);
        json_object_set_new(j, "ignored", json_integer(res->ignored));
        json_object_set_new(j, "seconds", json_real(res->seconds));
        json_object_set_new(
            j, "decisions_per_s",
            json_integer(res->seconds > 0
                             ? (json_int_t)((double)decisions / res->seconds)
                             : 0));
        json_object_set_new(j, "p50_us",
                            json_real(hist_quantile_us(&res->hist, 0.50)));
        json_object_set_new(j, "p99_us",
                            json_real(hist_quantile_us(&res->hist, 0.99)));
        json_object_set_new(j, "p999_us",
                            json_real(hist_quantile_us(&res->hist, 0.999)));
        json_object_set_new(j, "max_us",
                            json_real((double)res->hist.max_ns / 1000.0));
        json_object_set_new(j, "pipeline", json_integer(o->pipeline));
        json_object_set_new(j, "activities",
                            json_integer((json_int_t)w->n_acts));
        json_object_set_new(j, "skipped_lines",
                            json_integer((json_int_t)w->skipped));
        json_object_set_new(j, "checks", json_string(checks));
        s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        if (s)
                printf("%s\n", s);
        fflush(stdout);
        free(s);
        json_decref(j);
}

int main(int argc, char **argv) {
        static result_t res; /* the histogram is 30 KB: not on the stack */
        struct timeval tv = { 5, 0 };
        struct sigaction sa;
        workload_t w;
        opts_t o;
        redisContext *c;
        redisReply *r;
        char sha[64];
        long long existing, deleted;
        int bad = 0, status = 0;
        size_t i;

        memset(&o, 0, sizeof(o));
        memset(&w, 0, sizeof(w));
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        /* A closed stdout or stderr must not kill us before the keys are
         * deleted. */
        signal(SIGPIPE, SIG_IGN);
        if (parse_args(argc, argv, &o))
                return 2;
        if (load_workload(&w, o.path, o.stamp_ts)) {
                workload_free(&w);
                return 2;
        }
        if (!w.n_orders) {
                fprintf(stderr,
                        "bench_lua_seckill: %s: no PlaceOrder "
                        "line\n",
                        o.path);
                workload_free(&w);
                return 2;
        }

        c = redisConnectWithTimeout(o.host, o.port, tv);
        if (!c || c->err) {
                fprintf(stderr,
                        "bench_lua_seckill: cannot connect to Redis at "
                        "%s:%d: %s\n",
                        o.host, o.port, c ? c->errstr : "out of memory");
                redisFree(c);
                workload_free(&w);
                return 3;
        }
        /* No call waits forever on a stalled server. */
        tv.tv_sec = 60;
        redisSetTimeout(c, tv);

        existing = scan_prefix(c, o.prefix, 0);
        if (existing != 0) {
                if (existing > 0)
                        fprintf(stderr,
                                "bench_lua_seckill: keys under \"%s\" exist "
                                "already; choose another --prefix\n",
                                o.prefix);
                redisFree(c);
                workload_free(&w);
                return 3;
        }

        r = expect(c, redisCommand(c, "SCRIPT LOAD %s", lua_seckill),
                   REDIS_REPLY_STRING, "SCRIPT LOAD");
        if (!r) {
                redisFree(c);
                workload_free(&w);
                return 3;
        }
        snprintf(sha, sizeof(sha), "%s", r->str);
        freeReplyObject(r);

        build_headers(&w, o.prefix, sha);
        if (create_activities(c, &w) || run(c, &w, o.pipeline, &res)) {
                status = 3;
                /* a failed connection cannot clean up: reconnect */
                if (c->err) {
                        redisFree(c);
                        tv.tv_sec = 5;
                        c = redisConnectWithTimeout(o.host, o.port, tv);
                        if (c && !c->err) {
                                tv.tv_sec = 60;
                                redisSetTimeout(c, tv);
                        }
                }
        } else {
                fprintf(stderr,
                        "bench_lua_seckill: %zu PlaceOrder from %s, %zu "
                        "activities, %zu other lines skipped, pipeline %ld, "
                        "Redis %s:%d\n",
                        w.n_orders, o.path, w.n_acts, w.skipped, o.pipeline,
                        o.host, o.port);
                bad = check_end_state(c, &w);
                if (bad < 0)
                        status = 3;
                else {
                        fprintf(stderr,
                                "  %lld decisions in %.3f s: %.0f/s; "
                                "accepted %lld, rejected %lld, ignored %lld; "
                                "latency p50 %.1f us, p99 %.1f us, p99.9 "
                                "%.1f us, max %.1f us\n",
                                res.accepted + res.rejected + res.ignored,
                                res.seconds,
                                (double)(res.accepted + res.rejected +
                                         res.ignored) /
                                    res.seconds,
                                res.accepted, res.rejected, res.ignored,
                                hist_quantile_us(&res.hist, 0.50),
                                hist_quantile_us(&res.hist, 0.99),
                                hist_quantile_us(&res.hist, 0.999),
                                (double)res.hist.max_ns / 1000.0);
                        for (i = 0; i < res.n_reasons; i++)
                                if (res.reasons[i].n)
                                        fprintf(stderr, "  rejected %s: %lld\n",
                                                res.reasons[i].name,
                                                res.reasons[i].n);
                        if (w.invalid_acts || w.dup_acts)
                                fprintf(stderr,
                                        "  CreateActivity refused: %zu "
                                        "invalid, %zu duplicate\n",
                                        w.invalid_acts, w.dup_acts);
                        fprintf(stderr, "  end-state checks: %s\n",
                                bad ? "FAILED" : "ok");
                        print_json(&o, &w, &res, bad ? "FAILED" : "ok");
                        if (bad)
                                status = 1;
                }
        }

        deleted = c && !c->err ? scan_prefix(c, o.prefix, 1) : -1;
        if (deleted < 0)
                fprintf(stderr,
                        "bench_lua_seckill: could not delete the keys under "
                        "\"%s\"; delete them by hand\n",
                        o.prefix);
        else
                fprintf(stderr, "  deleted %lld keys under \"%s\"\n", deleted,
                        o.prefix);
        redisFree(c);
        workload_free(&w);
        return status;
}
