/*
 * ordo - Redis read models (DESIGN.md "Read models"): stock, order status,
 * earnings, the settled-commission leaderboard.
 *
 * Workload: what a mini-program polls right after placing or paying an
 * order, fed by batches from the Kafka consume loop and re-applied whole or
 * in part after a crash or an outage. Each batch is one pipeline of EVALSHA
 * calls (plus a second, short one for the leaderboard); each call is one
 * Lua script that checks its guard and writes in the same atomic step.
 *
 * Guards, so that redelivery never double counts:
 *   - stock: the activity's version in "{<prefix>stock:<id>}:version" (the
 *     stock key itself must stay a plain integer, the contract);
 *   - order hash: a "version" field inside the hash;
 *   - earnings: the last applied offset of every source partition, in the
 *     hash "{<prefix>earnings:<user>}:offsets", checked in the same call
 *     that increments.
 * A guard key names its data key as its hash tag, so both land in the same
 * Redis Cluster slot and one Lua call may touch both.
 *
 * The leaderboard is not incremented: after the earnings call returns the
 * user's settled total, "ZADD GT total user" sets it. Settled totals only
 * grow, so GT makes the write idempotent, order-free across partitions and
 * self-repairing after a crash between the two pipelines (a re-applied
 * settlement is skipped by its guard but still returns the total). It also
 * keeps every Lua call on a single slot.
 */
#include "projection.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_conn.h"

#define PREFIX_MAX 64
#define CHUNK      512 /* events per pipeline: bounds memory, not correctness */
#define ARGS_MAX   16  /* the longest: OrderOpened, 13 */

/* Set a string key from its version guard: KEYS stock, guard;
 * ARGV version, value. */
static const char lua_set_newer[] =
    "local v = tonumber(redis.call('GET', KEYS[2]) or '-1')\n"
    "if tonumber(ARGV[1]) <= v then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "redis.call('SET', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* Order hash: KEYS hash; ARGV version, field, value, ... A REJECTED
 * placeholder (no version) is replaced, and loses its TTL. */
static const char lua_hset_newer[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')\n"
    "if tonumber(ARGV[1]) <= v then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'version', ARGV[1], unpack(ARGV, 2))\n"
    "redis.call('PERSIST', KEYS[1])\n"
    "return 1\n";

/* Rejected PlaceOrder: KEYS hash; ARGV reason, ttl. Never overwrites a
 * placed order (the same order_id may live in another activity). */
static const char lua_reject_place[] =
    "local s = redis.call('HGET', KEYS[1], 'status')\n"
    "if s and s ~= 'REJECTED' then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'status', 'REJECTED', 'reason', ARGV[1])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n";

/* A rejected command on a placed order (ConfirmPayment AMOUNT_MISMATCH...):
 * KEYS hash; ARGV offset, command, reason. Only on an existing order; the
 * order's own offset order decides which rejection is the last. */
static const char lua_reject_order[] =
    "if redis.call('HEXISTS', KEYS[1], 'version') == 0 then return 0 end\n"
    "local o = tonumber(redis.call('HGET', KEYS[1], "
    "'last_rejection_offset') or '-1')\n"
    "if tonumber(ARGV[1]) <= o then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'last_rejection_offset', ARGV[1], "
    "'last_rejection_command', ARGV[2], 'last_rejection_reason', ARGV[3])\n"
    "return 1\n";

/* Earnings: KEYS hash, guard; ARGV source/partition, offset, d_pending,
 * d_settled, d_reversed. Returns the settled total either way. */
static const char lua_earn[] =
    "local o = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')\n"
    "if tonumber(ARGV[2]) > o then\n"
    "  redis.call('HINCRBY', KEYS[1], 'pending_cents', ARGV[3])\n"
    "  redis.call('HINCRBY', KEYS[1], 'settled_cents', ARGV[4])\n"
    "  redis.call('HINCRBY', KEYS[1], 'reversed_cents', ARGV[5])\n"
    "  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])\n"
    "end\n"
    "return tonumber(redis.call('HGET', KEYS[1], 'settled_cents') or '0')\n";

enum {
        S_SET_NEWER,
        S_HSET_NEWER,
        S_REJECT_PLACE,
        S_REJECT_ORDER,
        S_EARN,
        S__N
};

static const char *scripts[S__N] = { lua_set_newer, lua_hset_newer,
                                     lua_reject_place, lua_reject_order,
                                     lua_earn };

/* One command of a pipeline; arguments point into buf or into the event. */
typedef struct cmd_s {
        int argc;
        const char *argv[ARGS_MAX];
        size_t len[ARGS_MAX];
        char buf[640];
        size_t used;
        const char *leader; /* settlement: the user whose total is replied */
} cmd_t;

struct ordo_redis_proj_s {
        char *host;
        int port;
        char prefix[PREFIX_MAX + 1];
        int64_t ttl;
        redisContext *c;
        char sha[S__N][41];
        int down;    /* last attempt failed: log the recovery */
        cmd_t *cmds; /* CHUNK of them, reused */
        ordo_redis_login_t login;
};

static void arg(cmd_t *k, const char *s) {
        if (k->argc >= ARGS_MAX)
                abort(); /* a programming error: ARGS_MAX is too small */
        k->argv[k->argc] = s;
        k->len[k->argc] = strlen(s);
        k->argc++;
}

static void argf(cmd_t *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keys are at most prefix + 2 ids + a few words: buf is sized for them. */
static void argf(cmd_t *k, const char *fmt, ...) {
        char *dst = k->buf + k->used;
        size_t room = sizeof(k->buf) - k->used;
        va_list ap;
        int n;

        if (k->argc >= ARGS_MAX)
                abort(); /* a programming error: ARGS_MAX is too small */
        va_start(ap, fmt);
        n = vsnprintf(dst, room, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= room)
                n = room ? (int)room - 1 : 0; /* cannot happen: sized */
        k->argv[k->argc] = dst;
        k->len[k->argc] = (size_t)n;
        k->argc++;
        k->used += (size_t)n + 1;
}

static void evalsha(ordo_redis_proj_t *p, cmd_t *k, int script, int nkeys) {
        k->argc = 0;
        k->used = 0;
        k->leader = NULL;
        arg(k, "EVALSHA");
        arg(k, p->sha[script]);
        argf(k, "%d", nkeys);
}

static void disconnect(ordo_redis_proj_t *p) {
        if (p->c)
                redisFree(p->c);
        p->c = NULL;
}

/* Errors that mean "not now": the server is starting, busy or failing
 * over. Anything else is a fault of ours or of the data. */
static int transient(const char *s) {
        return !strncmp(s, "LOADING", 7) || !strncmp(s, "BUSY", 4) ||
               !strncmp(s, "MASTERDOWN", 10) || !strncmp(s, "TRYAGAIN", 8) ||
               !strncmp(s, "READONLY", 8) || !strncmp(s, "CLUSTERDOWN", 11);
}

static ordo_err_t unavailable(ordo_redis_proj_t *p, const char *detail,
                              char *errstr, size_t errstr_size) {
        snprintf(errstr, errstr_size, "redis %s:%d unavailable: %s", p->host,
                 p->port, detail);
        if (!p->down)
                ORDO_LOG(WARN, "projection",
                         "msg=\"redis unavailable; batch to be retried\" "
                         "addr=%s:%d detail=\"%s\"",
                         p->host, p->port, detail);
        p->down = 1;
        return ORDO_ERR_UNAVAILABLE;
}

static ordo_err_t load_scripts(ordo_redis_proj_t *p, char *errstr,
                               size_t errstr_size) {
        int i;

        for (i = 0; i < S__N; i++) {
                redisReply *r =
                    redisCommand(p->c, "SCRIPT LOAD %s", scripts[i]);
                ordo_err_t err = ORDO_ERR_OK;

                if (!r) {
                        err = unavailable(p, p->c->errstr, errstr, errstr_size);
                        disconnect(p);
                        return err;
                }
                if (r->type == REDIS_REPLY_STRING && r->len == 40) {
                        memcpy(p->sha[i], r->str, 40);
                        p->sha[i][40] = '\0';
                } else if (r->type == REDIS_REPLY_ERROR && transient(r->str)) {
                        err = unavailable(p, r->str, errstr, errstr_size);
                } else {
                        snprintf(errstr, errstr_size, "redis: SCRIPT LOAD: %s",
                                 r->type == REDIS_REPLY_ERROR ? r->str
                                                              : "bad reply");
                        err = ORDO_ERR_REDIS;
                }
                freeReplyObject(r);
                if (err)
                        return err;
        }
        return ORDO_ERR_OK;
}

static ordo_err_t connect_now(ordo_redis_proj_t *p, char *errstr,
                              size_t errstr_size) {
        struct timeval cto = { 2, 0 }, rto = { 5, 0 };
        ordo_err_t err;

        if (p->c)
                return ORDO_ERR_OK;
        p->c = redisConnectWithTimeout(p->host, p->port, cto);
        if (!p->c)
                return unavailable(p, "cannot allocate context", errstr,
                                   errstr_size);
        if (p->c->err) {
                err = unavailable(p, p->c->errstr, errstr, errstr_size);
                disconnect(p);
                return err;
        }
        /* A stopped (not dead) server must not hang the consume loop. */
        redisSetTimeout(p->c, rto);
        err = ordo_redis_login(p->c, &p->login, errstr, errstr_size);
        if (!err)
                err = load_scripts(p, errstr, errstr_size);
        if (err) {
                disconnect(p);
                return err;
        }
        if (p->down)
                ORDO_LOG(INFO, "projection",
                         "msg=\"redis reachable again\" addr=%s:%d", p->host,
                         p->port);
        p->down = 0;
        return ORDO_ERR_OK;
}

ordo_redis_proj_t *ordo_redis_proj_new(const char *host, int port,
                                       const char *prefix,
                                       int64_t rejected_ttl_s, char *errstr,
                                       size_t errstr_size) {
        ordo_redis_proj_t *p;
        char ignored[256];

        if (!host || !*host || port <= 0 || port > 65535 || !prefix ||
            strlen(prefix) > PREFIX_MAX || rejected_ttl_s < 1) {
                snprintf(errstr, errstr_size,
                         "redis: host, port 1..65535, a prefix of at most %d "
                         "bytes and a TTL >= 1 s required",
                         PREFIX_MAX);
                return NULL;
        }
        p = calloc(1, sizeof(*p));
        if (p) {
                p->host = strdup(host);
                p->cmds = calloc(CHUNK, sizeof(*p->cmds));
        }
        if (!p || !p->host || !p->cmds) {
                ordo_redis_proj_destroy(p);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->port = port;
        memcpy(p->prefix, prefix, strlen(prefix) + 1);
        p->ttl = rejected_ttl_s;
        /* Unreachable now is fine: apply reconnects and says so. */
        (void)connect_now(p, ignored, sizeof(ignored));
        return p;
}

void ordo_redis_proj_set_login(ordo_redis_proj_t *p,
                               const ordo_redis_login_t *login) {
        char ignored[256];
        p->login = *login;
        disconnect(p);
        (void)connect_now(p, ignored, sizeof(ignored));
}

void ordo_redis_proj_destroy(ordo_redis_proj_t *p) {
        if (!p)
                return;
        disconnect(p);
        free(p->host);
        free(p->cmds);
        free(p);
}

static void order_hash(ordo_redis_proj_t *p, cmd_t *k, const char *order_id,
                       int64_t version) {
        evalsha(p, k, S_HSET_NEWER, 1);
        argf(k, "%sorder:%s", p->prefix, order_id);
        argf(k, "%lld", (long long)version);
}

static void stock(ordo_redis_proj_t *p, cmd_t *k, const char *activity_id,
                  int64_t version, int64_t remaining) {
        evalsha(p, k, S_SET_NEWER, 2);
        argf(k, "%sstock:%s", p->prefix, activity_id);
        argf(k, "{%sstock:%s}:version", p->prefix, activity_id);
        argf(k, "%lld", (long long)version);
        argf(k, "%lld", (long long)remaining);
}

/* Commands whose rejection a buyer polling an order wants to see. */
static int order_command(const char *type) {
        return !strcmp(type, "CancelOrder") ||
               !strcmp(type, "ConfirmPayment") ||
               !strcmp(type, "ConfirmReceipt") || !strcmp(type, "RefundOrder");
}

static void earnings(ordo_redis_proj_t *p, cmd_t *k,
                     const ordo_event_rec_t *r) {
        const ordo_commission_body_t *c = &r->msg->u.commission;
        int64_t a = c->amount_cents, dp = 0, ds = 0, dr = 0;

        switch (r->msg->type) {
        case ORDO_MSG_COMMISSION_ACCRUED:
                dp = a;
                break;
        case ORDO_MSG_COMMISSION_REVERSED:
                dp = -a;
                dr = a;
                break;
        default:
                dp = -a;
                ds = a;
                break;
        }
        evalsha(p, k, S_EARN, 2);
        argf(k, "%searnings:%s", p->prefix, c->beneficiary_id);
        argf(k, "{%searnings:%s}:offsets", p->prefix, c->beneficiary_id);
        argf(k, "%s/%d", r->source, (int)r->partition);
        argf(k, "%lld", (long long)r->offset);
        argf(k, "%lld", (long long)dp);
        argf(k, "%lld", (long long)ds);
        argf(k, "%lld", (long long)dr);
        if (r->msg->type == ORDO_MSG_COMMISSION_SETTLED)
                k->leader = c->beneficiary_id;
}

/* Fill k for one event; 0 when the event has no Redis read model. */
static int build(ordo_redis_proj_t *p, cmd_t *k, const ordo_event_rec_t *r) {
        const ordo_msg_t *m = r->msg;
        int64_t v = m->meta.version;

        switch (m->type) {
        case ORDO_MSG_ACTIVITY_CREATED:
                stock(p, k, m->u.activity.activity_id, v, m->u.activity.stock);
                return 1;
        case ORDO_MSG_STOCK_RESERVED:
        case ORDO_MSG_STOCK_RELEASED:
                stock(p, k, m->u.stock.activity_id, v, m->u.stock.remaining);
                return 1;
        case ORDO_MSG_ORDER_OPENED:
                order_hash(p, k, m->u.open.order_id, v);
                arg(k, "status");
                arg(k, "PENDING_PAYMENT");
                arg(k, "reason");
                arg(k, "");
                arg(k, "amount_cents");
                argf(k, "%lld", (long long)m->u.open.amount_cents);
                arg(k, "refunded_cents");
                arg(k, "0");
                return 1;
        case ORDO_MSG_ORDER_PAID:
                order_hash(p, k, m->u.payment.order_id, v);
                arg(k, "status");
                arg(k, "PAID");
                return 1;
        case ORDO_MSG_ORDER_CANCELLED:
                order_hash(p, k, m->u.release.order_id, v);
                arg(k, "status");
                arg(k, "CANCELLED");
                arg(k, "reason");
                arg(k, m->u.release.reason);
                return 1;
        case ORDO_MSG_ORDER_RECEIVED:
                order_hash(p, k, m->u.received.order_id, v);
                arg(k, "status");
                arg(k, "RECEIVED");
                return 1;
        case ORDO_MSG_ORDER_REFUNDED:
                order_hash(p, k, m->u.refund.order_id, v);
                arg(k, "refunded_cents");
                argf(k, "%lld", (long long)m->u.refund.refunded_cents);
                if (m->u.refund.full) {
                        arg(k, "status");
                        arg(k, "REFUNDED");
                }
                return 1;
        case ORDO_MSG_ORDER_SETTLED:
                order_hash(p, k, m->u.settled.order_id, v);
                arg(k, "status");
                arg(k, "SETTLED");
                return 1;
        case ORDO_MSG_COMMISSION_ACCRUED:
        case ORDO_MSG_COMMISSION_REVERSED:
        case ORDO_MSG_COMMISSION_SETTLED:
                earnings(p, k, r);
                return 1;
        case ORDO_MSG_COMMAND_REJECTED: {
                const ordo_rejected_body_t *j = &m->u.rejected;

                if (!j->order_id[0])
                        return 0;
                if (!strcmp(j->command_type, "PlaceOrder")) {
                        evalsha(p, k, S_REJECT_PLACE, 1);
                        argf(k, "%sorder:%s", p->prefix, j->order_id);
                        arg(k, j->reason);
                        argf(k, "%lld", (long long)p->ttl);
                        return 1;
                }
                if (order_command(j->command_type)) {
                        evalsha(p, k, S_REJECT_ORDER, 1);
                        argf(k, "%sorder:%s", p->prefix, j->order_id);
                        argf(k, "%lld", (long long)r->offset);
                        arg(k, j->command_type);
                        arg(k, j->reason);
                        return 1;
                }
                return 0;
        }
        default:
                return 0;
        }
}

/* Send n commands and read every reply, so the connection stays in step
 * whatever fails. *noscript is set when the server lost our scripts (a
 * restart or SCRIPT FLUSH between connect and now). totals[i] receives the
 * integer reply of command i. */
static ordo_err_t pipeline(ordo_redis_proj_t *p, cmd_t *cmds, size_t n,
                           long long *totals, int *noscript, char *errstr,
                           size_t errstr_size) {
        ordo_err_t err = ORDO_ERR_OK;
        size_t i;

        *noscript = 0;
        for (i = 0; i < n; i++)
                if (redisAppendCommandArgv(p->c, cmds[i].argc, cmds[i].argv,
                                           cmds[i].len) != REDIS_OK)
                        break;
        if (i < n) {
                err = unavailable(p, p->c->errstr, errstr, errstr_size);
                disconnect(p);
                return err;
        }
        for (i = 0; i < n; i++) {
                redisReply *r = NULL;

                if (redisGetReply(p->c, (void **)&r) != REDIS_OK || !r) {
                        err = unavailable(p, p->c->errstr, errstr, errstr_size);
                        disconnect(p);
                        return err;
                }
                if (totals)
                        totals[i] =
                            r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
                if (r->type == REDIS_REPLY_ERROR && err == ORDO_ERR_OK) {
                        if (!strncmp(r->str, "NOSCRIPT", 8)) {
                                *noscript = 1;
                                err = ORDO_ERR_REDIS;
                        } else if (transient(r->str)) {
                                err =
                                    unavailable(p, r->str, errstr, errstr_size);
                        } else {
                                err = ORDO_ERR_REDIS;
                        }
                        if (err == ORDO_ERR_REDIS)
                                snprintf(errstr, errstr_size, "redis: %s: %s",
                                         cmds[i].argv[0], r->str);
                }
                freeReplyObject(r);
        }
        return err;
}

/* The settled totals of this chunk's settlements onto the leaderboard. */
static ordo_err_t leaderboard(ordo_redis_proj_t *p, const cmd_t *cmds,
                              const long long *totals, size_t n, char *errstr,
                              size_t errstr_size) {
        cmd_t *z;
        size_t i, m = 0;
        int noscript;
        ordo_err_t err;

        z = calloc(n ? n : 1, sizeof(*z));
        if (!z) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_NOMEM;
        }
        for (i = 0; i < n; i++) {
                cmd_t *k = &z[m];

                if (!cmds[i].leader || totals[i] <= 0)
                        continue;
                arg(k, "ZADD");
                argf(k, "%sleaderboard:settled", p->prefix);
                arg(k, "GT");
                argf(k, "%lld", totals[i]);
                arg(k, cmds[i].leader);
                m++;
        }
        err = m ? pipeline(p, z, m, NULL, &noscript, errstr, errstr_size)
                : ORDO_ERR_OK;
        free(z);
        return err;
}

static ordo_err_t apply_chunk(ordo_redis_proj_t *p,
                              const ordo_event_rec_t *recs, size_t n,
                              char *errstr, size_t errstr_size) {
        long long totals[CHUNK];
        size_t i, m = 0;
        int attempt, noscript;
        ordo_err_t err = ORDO_ERR_OK;

        for (i = 0; i < n; i++) {
                const ordo_msg_t *msg = recs[i].msg;

                if (!msg) {
                        snprintf(errstr, errstr_size,
                                 "redis: event %zu has no message", i);
                        return ORDO_ERR_INVALID_ARG;
                }
                if (msg->type >= ORDO_MSG_COMMISSION_ACCRUED &&
                    msg->type <= ORDO_MSG_COMMISSION_SETTLED &&
                    (!recs[i].source || !*recs[i].source ||
                     strlen(recs[i].source) > 100)) {
                        snprintf(errstr, errstr_size,
                                 "redis: event %zu (%s): source topic name "
                                 "missing or too long",
                                 i, ordo_msg_type_name(msg->type));
                        return ORDO_ERR_INVALID_ARG;
                }
                if (build(p, &p->cmds[m], &recs[i]))
                        m++;
        }
        if (!m)
                return ORDO_ERR_OK;
        /* Every call is guarded, so running the chunk again after the
         * server forgot our scripts is safe. */
        for (attempt = 0; attempt < 2; attempt++) {
                err = connect_now(p, errstr, errstr_size);
                if (err)
                        return err;
                err = pipeline(p, p->cmds, m, totals, &noscript, errstr,
                               errstr_size);
                if (!noscript)
                        break;
                disconnect(p); /* reconnecting reloads the scripts */
        }
        if (err)
                return err;
        return leaderboard(p, p->cmds, totals, m, errstr, errstr_size);
}

ordo_err_t ordo_redis_proj_apply(ordo_redis_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size) {
        size_t off, len;
        ordo_err_t err;

        if (!p || (n && !recs)) {
                snprintf(errstr, errstr_size, "redis: invalid arguments");
                return ORDO_ERR_INVALID_ARG;
        }
        for (off = 0; off < n; off += len) {
                len = n - off < CHUNK ? n - off : CHUNK;
                err = apply_chunk(p, recs + off, len, errstr, errstr_size);
                if (err)
                        return err;
        }
        return ORDO_ERR_OK;
}
