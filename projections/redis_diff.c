/*
 * ordo - the Redis side of the store diff (store.h: ordo_store_diff, for
 * reconcile): every data key of the live prefix against the rebuilt
 * prefix, and back, in SCAN batches with pipelined reads. Guard keys
 * ({prefix...}:version, :offsets) and TTLs are the projection's own
 * business and not compared.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "projection.h"
#include "redis_conn.h"

typedef struct {
        ordo_diff_t *r;
        const char *live, *tmp;
        const char *family; /* "stock:", "order:", "earnings:" */
        int reverse;        /* scanning the rebuilt prefix */
} rscan_t;

/* The value of field k in an HGETALL reply, or NULL: hashes are compared
 * as maps, Redis returns fields in no particular order. */
static const char *hget(const redisReply *h, const char *k) {
        size_t i;
        if (!h || h->type != REDIS_REPLY_ARRAY)
                return NULL;
        for (i = 0; i + 1 < h->elements; i += 2)
                if (!strcmp(h->element[i]->str, k))
                        return h->element[i + 1]->str;
        return NULL;
}

static void diff_hash(ordo_diff_t *r, const char *key, const redisReply *e,
                      const redisReply *a) {
        size_t i;
        int shown = 0;
        char qe[512], qa[512];
        for (i = 0; i + 1 < e->elements; i += 2) {
                const char *f = e->element[i]->str;
                const char *av = hget(a, f);
                if (!av || strcmp(av, e->element[i + 1]->str)) {
                        ordo_diff_line(r,
                                       "DIFF redis %s field=%s expected=\"%s\" "
                                       "actual=%s%s%s",
                                       key, f,
                                       ordo_log_quote(qe, sizeof(qe),
                                                      e->element[i + 1]->str),
                                       av ? "\"" : "",
                                       av ? ordo_log_quote(qa, sizeof(qa), av)
                                          : "(absent)",
                                       av ? "\"" : "");
                        shown++;
                }
        }
        for (i = 0; i + 1 < a->elements; i += 2)
                if (!hget(e, a->element[i]->str)) {
                        ordo_diff_line(
                            r,
                            "DIFF redis %s field=%s expected=(absent) "
                            "actual=\"%s\"",
                            key,
                            ordo_log_quote(qe, sizeof(qe), a->element[i]->str),
                            ordo_log_quote(qa, sizeof(qa),
                                           a->element[i + 1]->str));
                        shown++;
                }
        if (shown)
                r->diffs++;
}

/* A reply that is not the value expected, for a DIFF line: "(hash)",
 * "(string)", or the server's error (a key of another type: WRONGTYPE). */
static const char *reply_kind(const redisReply *r, char *buf, size_t size) {
        char q[128];
        switch (r->type) {
        case REDIS_REPLY_ARRAY:
                return "(hash)";
        case REDIS_REPLY_STRING:
                return "(string)";
        case REDIS_REPLY_ERROR:
                snprintf(buf, size, "\"(error: %s)\"",
                         ordo_log_quote(q, sizeof(q), r->str));
                return buf;
        default:
                return "(other)";
        }
}

static int is_hash_family(const char *family) {
        return strcmp(family, "stock:") != 0;
}

static int rscan_batch(redisContext *c, redisReply *keys, void *opaque) {
        rscan_t *s = opaque;
        size_t i, plen = strlen(s->reverse ? s->tmp : s->live);
        const char *other = s->reverse ? s->live : s->tmp;
        const char *get = is_hash_family(s->family) ? "HGETALL" : "GET";
        /* a live hash's expiry: a REJECTED status with one may have
         * expired in the rebuild; one without is a difference */
        int with_ttl = !s->reverse && is_hash_family(s->family);
        for (i = 0; i < keys->elements; i++) {
                const char *k = keys->element[i]->str;
                redisAppendCommand(c, "%s %s", get, k);
                redisAppendCommand(c, "%s %s%s", get, other, k + plen);
                if (with_ttl)
                        redisAppendCommand(c, "PTTL %s", k);
        }
        for (i = 0; i < keys->elements; i++) {
                redisReply *mine = NULL, *theirs = NULL, *ttl = NULL;
                const char *k = keys->element[i]->str;
                char shown[400], raw[400];
                int expires;
                if (redisGetReply(c, (void **)&mine) != REDIS_OK ||
                    redisGetReply(c, (void **)&theirs) != REDIS_OK ||
                    (with_ttl && redisGetReply(c, (void **)&ttl) != REDIS_OK)) {
                        freeReplyObject(mine);
                        freeReplyObject(theirs);
                        s->r->errors++;
                        return 1;
                }
                expires = ttl && ttl->type == REDIS_REPLY_INTEGER &&
                          ttl->integer >= 0;
                freeReplyObject(ttl);
                /* Keys as the contract names them: under the live prefix,
                 * escaped as values are (an id cannot split the line). */
                snprintf(raw, sizeof(raw), "%s%s", s->live, k + plen);
                ordo_log_quote(shown, sizeof(shown), raw);
                if (s->reverse) {
                        int missing = theirs->type == REDIS_REPLY_NIL ||
                                      (theirs->type == REDIS_REPLY_ARRAY &&
                                       theirs->elements == 0);
                        if (missing) {
                                const char *st = hget(mine, "status");
                                if (st && !strcmp(st, "REJECTED")) {
                                        /* A rejected attempt expires
                                         * (redis.rejected.ttl.s): its
                                         * absence may be its TTL. */
                                        s->r->notes++;
                                        ordo_diff_line(
                                            s->r,
                                            "NOTE redis %s missing: a "
                                            "REJECTED status, expired? "
                                            "(not counted)",
                                            shown);
                                } else {
                                        s->r->diffs++;
                                        ordo_diff_line(
                                            s->r,
                                            "DIFF redis %s missing: in the "
                                            "rebuild from the event log, "
                                            "not live",
                                            shown);
                                }
                        }
                } else {
                        int absent = theirs->type == REDIS_REPLY_NIL ||
                                     (theirs->type == REDIS_REPLY_ARRAY &&
                                      theirs->elements == 0);
                        const char *st = hget(mine, "status");
                        s->r->compared++;
                        if (absent && st && !strcmp(st, "REJECTED") &&
                            expires) {
                                /* its TTL runs from when it was written:
                                 * expired between the two reads */
                                s->r->notes++;
                                ordo_diff_line(s->r,
                                               "NOTE redis %s extra: a "
                                               "REJECTED status, expired in "
                                               "the rebuild? (not counted)",
                                               shown);
                        } else if (absent) {
                                s->r->diffs++;
                                ordo_diff_line(
                                    s->r,
                                    "DIFF redis %s extra: live, not in "
                                    "the rebuild from the event log",
                                    shown);
                        } else if (mine->type == REDIS_REPLY_STRING &&
                                   theirs->type == REDIS_REPLY_STRING) {
                                if (strcmp(mine->str, theirs->str)) {
                                        char qe[512], qa[512];
                                        s->r->diffs++;
                                        ordo_diff_line(
                                            s->r,
                                            "DIFF redis %s expected=\"%s\" "
                                            "actual=\"%s\"",
                                            shown,
                                            ordo_log_quote(qe, sizeof(qe),
                                                           theirs->str),
                                            ordo_log_quote(qa, sizeof(qa),
                                                           mine->str));
                                }
                        } else if (mine->type == REDIS_REPLY_ARRAY &&
                                   theirs->type == REDIS_REPLY_ARRAY)
                                diff_hash(s->r, shown, theirs, mine);
                        else {
                                char e[160], a[160];
                                s->r->diffs++;
                                ordo_diff_line(s->r,
                                               "DIFF redis %s expected=%s "
                                               "actual=%s",
                                               shown,
                                               reply_kind(theirs, e, sizeof(e)),
                                               reply_kind(mine, a, sizeof(a)));
                        }
                }
                freeReplyObject(mine);
                freeReplyObject(theirs);
        }
        return 0;
}

/* Scores are doubles, and Redis writes one double two ways (ZSCAN
 * 133333333333333328, ZSCORE 1.3333333333333333e+17): compared as
 * numbers. */
static int same_score(const redisReply *s, const char *sc) {
        return s->type == REDIS_REPLY_STRING &&
               strtod(s->str, NULL) == strtod(sc, NULL);
}

/* The leaderboard, member by member, both ways (ZSCAN + ZSCORE). */
static void diff_leaderboard(redisContext *c, ordo_diff_t *r, const char *from,
                             const char *to, const char *live, int reverse) {
        char cursor[32] = "0", q[300];
        do {
                redisReply *z =
                    redisCommand(c, "ZSCAN %sleaderboard:settled %s COUNT 1000",
                                 from, cursor);
                size_t i;
                if (!z || z->type != REDIS_REPLY_ARRAY || z->elements != 2) {
                        fprintf(stderr,
                                "ordo reconcile: redis %sleaderboard:settled: "
                                "%s\n",
                                from,
                                !z ? c->errstr
                                : z->type == REDIS_REPLY_ERROR
                                    ? z->str
                                    : "not a sorted set");
                        if (z)
                                freeReplyObject(z);
                        r->errors++;
                        return;
                }
                snprintf(cursor, sizeof(cursor), "%s", z->element[0]->str);
                for (i = 0; i + 1 < z->element[1]->elements; i += 2)
                        redisAppendCommand(c, "ZSCORE %sleaderboard:settled %s",
                                           to, z->element[1]->element[i]->str);
                for (i = 0; i + 1 < z->element[1]->elements; i += 2) {
                        redisReply *s = NULL;
                        const char *mem = z->element[1]->element[i]->str;
                        const char *sc = z->element[1]->element[i + 1]->str;
                        if (redisGetReply(c, (void **)&s) != REDIS_OK) {
                                r->errors++;
                                break;
                        }
                        if (!reverse)
                                r->compared++;
                        if (s->type == REDIS_REPLY_NIL) {
                                r->diffs++;
                                ordo_diff_line(
                                    r,
                                    "DIFF redis %sleaderboard:settled "
                                    "member=%s %s",
                                    live, ordo_log_quote(q, sizeof(q), mem),
                                    reverse ? "missing: in the rebuild, "
                                              "not live"
                                            : "extra: live, not in the "
                                              "rebuild");
                        } else if (!reverse && !same_score(s, sc)) {
                                r->diffs++;
                                ordo_diff_line(
                                    r,
                                    "DIFF redis %sleaderboard:settled "
                                    "member=%s expected=%s actual=%s",
                                    live, ordo_log_quote(q, sizeof(q), mem),
                                    s->str, sc);
                        }
                        freeReplyObject(s);
                }
                freeReplyObject(z);
        } while (strcmp(cursor, "0") && !ordo_diff_stopped(r));
}

ordo_err_t ordo_redis_diff(const ordo_config_t *conf, const char *live,
                           const char *tmp, ordo_diff_t *r, char *errstr,
                           size_t errstr_size) {
        static const char *families[] = { "stock:", "order:", "earnings:" };
        redisContext *c;
        char esc[200], pat[220]; /* prefixes are at most 64 bytes */
        size_t f;
        int dir;

        if (strlen(live) > 64 || strlen(tmp) > 64) {
                snprintf(errstr, errstr_size,
                         "redis.prefix longer than 64 bytes");
                return ORDO_ERR_INVALID_ARG;
        }
        c = ordo_redis_connect(conf, 30, errstr, errstr_size);
        if (!c)
                return ORDO_ERR_UNAVAILABLE;
        for (dir = 0; dir < 2; dir++)
                for (f = 0; f < 3 && !ordo_diff_stopped(r); f++) {
                        rscan_t s = { r, live, tmp, families[f], dir };
                        char cursor[32] = "0";
                        ordo__redis_glob_escape(dir ? tmp : live, esc);
                        snprintf(pat, sizeof(pat), "%s%s*", esc, families[f]);
                        do {
                                redisReply *k = redisCommand(
                                    c, "SCAN %s MATCH %s COUNT 1000", cursor,
                                    pat);
                                if (!k || k->type != REDIS_REPLY_ARRAY ||
                                    k->elements != 2) {
                                        fprintf(stderr,
                                                "ordo reconcile: redis SCAN "
                                                "%s: %s\n",
                                                pat,
                                                !k ? c->errstr
                                                : k->type == REDIS_REPLY_ERROR
                                                    ? k->str
                                                    : "bad reply");
                                        if (k)
                                                freeReplyObject(k);
                                        r->errors++;
                                        break;
                                }
                                snprintf(cursor, sizeof(cursor), "%s",
                                         k->element[0]->str);
                                if (k->element[1]->elements)
                                        rscan_batch(c, k->element[1], &s);
                                freeReplyObject(k);
                        } while (strcmp(cursor, "0") && !ordo_diff_stopped(r));
                }
        if (!ordo_diff_stopped(r))
                diff_leaderboard(c, r, live, tmp, live, 0);
        if (!ordo_diff_stopped(r))
                diff_leaderboard(c, r, tmp, live, live, 1);
        redisFree(c);
        return ORDO_ERR_OK;
}
