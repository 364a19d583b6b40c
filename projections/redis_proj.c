/*
 * ordo - Redis read models (DESIGN.md "Read models"): stock, order status,
 * earnings, the settled-commission leaderboard.
 *
 * Workload: what a mini-program polls right after placing or paying an
 * order, fed by batches from the Kafka consume loop and re-applied whole or
 * in part after a crash or an outage. Each batch is one pipeline (the
 * leaderboard's writes at its end); each call is one Lua script that
 * checks its guard and writes in the same atomic step, except in a
 * rebuild's fresh target (ordo_redis_proj_set_fresh, decision 0022).
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

#include "clock.h"
#include "log.h"
#include "redis_conn.h"

#define PREFIX_MAX ORDO_REDIS_PREFIX_MAX
#define CHUNK      512 /* events per pipeline: bounds memory, not correctness */
#define CHUNK_CMDS (2 * CHUNK) /* an event makes at most two commands */
#define ARGS_MAX   32          /* the longest: OrderOpened, 23 */

/* Set a string key from its version guard: KEYS stock, guard;
 * ARGV version, value. */
static const char lua_set_newer[] =
    "local v = tonumber(redis.call('GET', KEYS[2]) or '-1')\n"
    "if tonumber(ARGV[1]) <= v then return 0 end\n"
    "redis.call('SET', KEYS[1], ARGV[2])\n"
    "redis.call('SET', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* Order hash: KEYS hash; ARGV the version of the same call's previous
 * command on this hash (-1: none), version, field, value, ... A REJECTED
 * placeholder (no version) is replaced whole: its reason (unset on a
 * placed order until CANCELLED) and its TTL go. An event carries only
 * the fields it changes, so a command whose previous one did not land
 * (Redis refused it: out of memory, busy) writes nothing and answers
 * ORDO_GAP: applied, it would move the version past the fields the
 * failed one carries, and the call applied again would skip them. */
static const char lua_hset_newer[] =
    "local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')\n"
    "if v < tonumber(ARGV[1]) then\n"
    "  return redis.error_reply('ORDO_GAP version ' .. ARGV[1] .. "
    "' of this call is not applied')\n"
    "end\n"
    "if tonumber(ARGV[2]) <= v then return 0 end\n"
    "if v < 0 then redis.call('DEL', KEYS[1]) end\n"
    "redis.call('HSET', KEYS[1], 'version', ARGV[2], unpack(ARGV, 3))\n"
    "return 1\n";

/* An order as its reservation opens it (StockReserved, decision 0024):
 * KEYS hash; ARGV field, value, ... Only where the order stage has not
 * written the hash (no version): its OrderOpened, version 1, then
 * replaces these fields with the same values. A REJECTED placeholder
 * goes whole. Version 0 says "reserved, not opened by the order stage
 * yet". */
static const char lua_hset_reserved[] =
    "if redis.call('HEXISTS', KEYS[1], 'version') == 1 then return 0 end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'version', '0', unpack(ARGV))\n"
    "return 1\n";

/* Rejected PlaceOrder: KEYS hash; ARGV reason, ttl, user_id. Never
 * overwrites a placed order (the same order_id may live in another
 * activity). The user_id lets a poller tell the attempt is its own.
 * Rejected in several activities (their partitions applied in any
 * order, live or in a rebuild), the one kept is the greatest by: not
 * UNKNOWN_ACTIVITY, then user_id, then reason; the same hash whatever
 * the order (a review found the last applied kept, and reconcile
 * reporting the difference). An UNKNOWN_ACTIVITY attempt is the only
 * one an activity decides afresh (it is not remembered), and always
 * before any other decision of that activity: ranked lowest, it never
 * hides the activity's real decision (an outside audit). Strings compare
 * byte by byte: Lua's < follows the server's locale (strcoll), and two
 * servers could keep different attempts (a review). */
static const char lua_reject_place[] =
    "local function after(a, b)\n"
    "  for i = 1, math.min(#a, #b) do\n"
    "    local x, y = a:byte(i), b:byte(i)\n"
    "    if x ~= y then return x > y end\n"
    "  end\n"
    "  return #a > #b\n"
    "end\n"
    "local h = redis.call('HMGET', KEYS[1], 'status', 'user_id', 'reason')\n"
    "if h[1] and h[1] ~= 'REJECTED' then return 0 end\n"
    "if h[1] then\n"
    "  local u, r = h[2] or '', h[3] or ''\n"
    "  local was = r ~= 'UNKNOWN_ACTIVITY'\n"
    "  local now = ARGV[1] ~= 'UNKNOWN_ACTIVITY'\n"
    "  if was and not now then return 0 end\n"
    "  if was == now and (after(u, ARGV[3]) or\n"
    "                     (u == ARGV[3] and after(r, ARGV[1])))\n"
    "  then return 0 end\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'status', 'REJECTED', 'reason', ARGV[1], "
    "'user_id', ARGV[3])\n"
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

/* Earnings: KEYS hash, guard; ARGV "1" when the call is one event applied
 * alone (else "0"), then one or more events of seven: source/partition,
 * offset, the offset of the previous event of this beneficiary and
 * source partition in the same batch (-1: none), d_pending, d_settled,
 * d_reversed, and the commission entry "<order_id>:<level>" (a chunk's
 * commission events of one beneficiary, folded; each partition's in
 * offset order). An event applies when its offset is newer than its
 * partition's guard. Returns the settled total either way.
 * Every running total is checked before anything changes, so a refused
 * call changes nothing but the mark below: it answers ORDO_REFUSED and
 * the caller parks the event. Refused: a total that would leave int64,
 * or go below 0, or any event of an entry refused before. An event
 * refused alone has its entry marked in the guard hash with its offset
 * ("refused:<entry>" = offset), so that none of its later events counts
 * either (RULES.md: a total that would overflow is refused, never
 * corrupted): the reversal of a refused accrual took from a pending that
 * never had it. The mark is read before the guard: a batch delivered
 * again (its dead letter may not have reached Kafka) parks the refused
 * event again, though a later event moved the guard past it. Only
 * alone: in a batch, a call after a refused one in the same pipeline
 * meets totals without it, and could refuse what would pass (store.c
 * applies a refused batch again one event at a time).
 * A batch's calls are pipelined, and one may fail (refused, or the
 * server out of memory or busy) while a later one for the same
 * beneficiary and partition succeeds: that one would move the guard past
 * the failed call's events, and the batch applied again would skip them
 * as applied, lost without a word (an outside audit, in a rebuild). So a
 * call whose partition guard is below the previous event of the batch
 * writes nothing and answers ORDO_GAP. An entry's events are in one
 * partition, its accrual first, so no order of partitions makes a total
 * negative otherwise. Lua numbers are doubles, exact only below 2^53, so
 * the totals are checked in two parts, billions and the rest (`int`,
 * which takes integers as Redis writes them, as HINCRBY does),
 * against 0..INT64_MAX exactly as MongoDB's $inc is; the increments go
 * to HINCRBY as the exact strings, and the settled total comes back as
 * one. A zero increment is skipped once the field exists, and each
 * source's newest applied offset is written once per call. */
static const char lua_earn[] =
    "local f = {'pending_cents', 'settled_cents', 'reversed_cents'}\n"
    "local hi, lo, had, seen, todo = {}, {}, {}, {}, {}\n"
    "local function int(s)\n"
    "  local sign, d = string.match(s, '^(%-?)([1-9]%d*)$')\n"
    "  if s == '0' then return 0, 0 end\n"
    "  if not d or #d > 19 then return nil end\n"
    "  local h = #d > 9 and tonumber(string.sub(d, 1, -10)) or 0\n"
    "  local l = tonumber(string.sub(d, -9))\n"
    "  if sign == '-' then return -h, -l end\n"
    "  return h, l\n"
    "end\n"
    "for i = 1, 3 do\n"
    "  local s = redis.call('HGET', KEYS[1], f[i])\n"
    "  had[i] = s ~= false\n"
    "  hi[i], lo[i] = int(s or '0')\n"
    "end\n"
    "local function refuse(e, off, why)\n"
    "  if ARGV[1] == '1' then\n"
    "    redis.call('HSET', KEYS[2], 'refused:' .. e, off)\n"
    "  end\n"
    "  return redis.error_reply('ORDO_REFUSED ' .. why)\n"
    "end\n"
    "for j = 2, #ARGV, 7 do\n"
    "  local src, off, e = ARGV[j], tonumber(ARGV[j + 1]), ARGV[j + 6]\n"
    "  local o = seen[src]\n"
    "  if o == nil then\n"
    "    o = tonumber(redis.call('HGET', KEYS[2], src) or '-1')\n"
    "  end\n"
    "  if o < tonumber(ARGV[j + 2]) then\n"
    "    return redis.error_reply('ORDO_GAP ' .. src .. ' offset ' .. "
    "ARGV[j + 2] .. ' of this batch is not applied')\n"
    "  end\n"
    "  local r = redis.call('HGET', KEYS[2], 'refused:' .. e)\n"
    "  if r and off >= (tonumber(r) or 0) then\n"
    "    return redis.error_reply('ORDO_REFUSED commission entry ' .. e "
    ".. ' was refused before')\n"
    "  end\n"
    "  if off > o then\n"
    "    for i = 1, 3 do\n"
    "      local dh, dl = int(ARGV[j + 2 + i])\n"
    "      if not hi[i] or not dh then\n"
    "        return redis.error_reply('ORDO_REFUSED ' .. f[i] .. "
    "' is not a number')\n"
    "      end\n"
    "      local h, l = hi[i] + dh, lo[i] + dl\n"
    "      while l >= 1e9 do h, l = h + 1, l - 1e9 end\n"
    "      while l < 0 do h, l = h - 1, l + 1e9 end\n"
    "      if h > 9223372036 or (h == 9223372036 and l > 854775807) then\n"
    "        return refuse(e, off, f[i] .. ' would leave the int64 range')\n"
    "      end\n"
    "      if h < 0 then\n"
    "        return refuse(e, off, f[i] .. ' would go below 0')\n"
    "      end\n"
    "      hi[i], lo[i] = h, l\n"
    "    end\n"
    "    todo[#todo + 1] = j\n"
    "    o = off\n"
    "  end\n"
    "  seen[src] = o\n"
    "end\n"
    "local last, pos = {}, {}\n"
    "for _, j in ipairs(todo) do\n"
    "  for i = 1, 3 do\n"
    "    local d = ARGV[j + 2 + i]\n"
    "    if d ~= '0' or not had[i] then\n"
    "      redis.call('HINCRBY', KEYS[1], f[i], d)\n"
    "      had[i] = true\n"
    "    end\n"
    "  end\n"
    "  local p = pos[ARGV[j]]\n"
    "  if not p then\n"
    "    p = #last + 1\n"
    "    pos[ARGV[j]] = p\n"
    "    last[p] = ARGV[j]\n"
    "  end\n"
    "  last[p + 1] = ARGV[j + 1]\n"
    "end\n"
    "if #last > 0 then redis.call('HSET', KEYS[2], unpack(last)) end\n"
    "return redis.call('HGET', KEYS[1], 'settled_cents') or '0'\n";

enum {
        S_SET_NEWER,
        S_HSET_NEWER,
        S_REJECT_PLACE,
        S_REJECT_ORDER,
        S_EARN,
        S_HSET_RESERVED,
        S__N
};

static const char *scripts[S__N] = { lua_set_newer,    lua_hset_newer,
                                     lua_reject_place, lua_reject_order,
                                     lua_earn,         lua_hset_reserved };

/* The keys whose writes of one chunk fold into one command (and a fresh
 * target's version table, by key). */
enum { FOLD_NONE, FOLD_STOCK, FOLD_ORDER, FOLD_EARN };
/* A fresh target's seen-table kind of its rejected attempts (no fold) */
#define SEEN_REJECTED (FOLD_EARN + 1)

/* A plain command sent with a fresh target's one (ordo_redis_proj_set_fresh):
 * DEL of the key before it, or EXPIRE after it. */
enum { EXTRA_NONE, EXTRA_DEL_BEFORE, EXTRA_EXPIRE_AFTER };

/* One command of a pipeline; arguments point into buf or into the event. */
typedef struct cmd_s {
        int argc;
        const char *argv[ARGS_MAX];
        size_t len[ARGS_MAX];
        char buf[1024];
        size_t used;
        const char *leader; /* settlement: the user whose total is replied */
        int vi, xi;         /* the version's argument; stock: the value's */
        int extra;          /* EXTRA_* */
        int64_t ttl_s;      /* EXTRA_EXPIRE_AFTER's */
} cmd_t;

/* What reading a sent command's replies needs (its cmd_t is reused). */
typedef struct sent_s {
        const char *name, *leader;
        int extra;
} sent_t;

struct ordo_redis_proj_s {
        ordo_store_answer_fn *answered; /* may be NULL */
        void *answered_arg;
        char *host;
        int port;
        char prefix[PREFIX_MAX + 1];
        int64_t ttl;
        redisContext *c;
        char sha[S__N][41];
        int down;        /* last attempt failed: log the recovery */
        int starting;    /* the first connection (set_login) */
        cmd_t *cmds;     /* CHUNK_CMDS of them: the chunk being built */
        cmd_t *zcmds;    /* CHUNK: a chunk's leaderboard writes */
        sent_t *sent;    /* a call's commands sent, replies not read yet */
        size_t *chunk_m; /* a call's commands per chunk */
        size_t sent_cap;
        cmd_t scratch; /* an event's command before it is folded */
        /* Coalescing: the chunk's command of each stock key and order
         * hash, by an open-addressing table (index + 1 into cmds). */
        const char *fold_id[2 * CHUNK];
        int fold_kind[2 * CHUNK];
        size_t fold_cmd[2 * CHUNK];
        ordo_redis_login_t login;
        /* A fresh target (ordo_redis_proj_set_fresh): the newest version
         * written to each order hash and stock key, by a 64-bit hash of
         * the key (h 0: an empty slot). Keys sharing a hash share the
         * highest version, which only sends more to the scripts. full:
         * the table cannot grow; keys not in it go to the scripts. */
        int fresh, seen_full;
        int alone; /* the batch being applied is one event */
        /* The call's last offset of each beneficiary and source
         * partition so far, and its last version of each order hash,
         * by a 64-bit hash of them (h 0: an empty slot), for the
         * scripts' gap checks (batch_previous). Keys sharing a hash only
         * make a false gap: the batch is applied again event by event. */
        struct batch_off_s {
                uint64_t h;
                int64_t off;
                uint32_t gen; /* the slot is empty unless batch_gen */
        } * batch_off;
        size_t batch_off_cap;
        uint32_t batch_gen;
        struct seen_s {
                uint64_t h;
                int64_t v;
        } * seen;
        size_t seen_cap, seen_n;
        /* The entries' versions before this call changed them, in the
         * order changed (room for one per event: sent_room), restored
         * when the call fails (seen_undo). */
        struct seen_s *undo;
        size_t undo_n;
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

static void begin(cmd_t *k) {
        k->argc = 0;
        k->used = 0;
        k->leader = NULL;
        k->vi = k->xi = 0;
        k->extra = EXTRA_NONE;
        k->ttl_s = 0;
}

static void evalsha(ordo_redis_proj_t *p, cmd_t *k, int script, int nkeys) {
        begin(k);
        arg(k, "EVALSHA");
        arg(k, p->sha[script]);
        argf(k, "%d", nkeys);
}

static void disconnect(ordo_redis_proj_t *p) {
        if (p->c)
                redisFree(p->c);
        p->c = NULL;
}

/* Errors that mean "not now". Only three kinds of reply are about the
 * write itself, permanent for that event (projection.h): our scripts'
 * refusals (ORDO_...), a key of another type (WRONGTYPE) and Redis's
 * generic ERR (a script's runtime error, an integer overflow). Every
 * other error code is the server's state, an operator's fix: starting
 * (LOADING), busy, failing over, full (OOM), refusing writes after a
 * failed save (MISCONF) or without its replicas (NOREPLICAS), not
 * letting us in, and codes not known here; the projection waits
 * (decision 0014). A list of the transient ones instead lacked MISCONF
 * and NOREPLICAS, and an outside audit saw 13,599 good events parked. */
static int transient(const char *s) {
        const char *inner;
        /* Redis 6 wraps what a script's call met: "ERR Error running
         * script (...): @user_script:1: -OOM ..." (7 keeps the code) */
        if (!strncmp(s, "ERR Error running script", 24) &&
            (inner = strstr(s, ": -")))
                return transient(inner + 3);
        return (strncmp(s, "ORDO_", 5) && strncmp(s, "WRONGTYPE", 9) &&
                strncmp(s, "ERR ", 4)) ||
               !strncmp(s, "ERR max number of clients", 25) ||
               !strncmp(s, "ERR Script killed", 17); /* SCRIPT KILL */
}

static ordo_err_t unavailable(ordo_redis_proj_t *p, const char *detail,
                              char *errstr, size_t errstr_size) {
        char q[1024];
        snprintf(errstr, errstr_size, "redis %s:%d unavailable: %s", p->host,
                 p->port, detail);
        if (!p->down)
                ORDO_LOG(WARN, "projection",
                         "msg=\"redis unavailable; batch to be retried\" "
                         "addr=%s:%d detail=\"%s\"",
                         p->host, p->port,
                         ordo_log_quote(q, sizeof(q), detail));
        p->down = 1;
        return ORDO_ERR_UNAVAILABLE;
}

/* The connection failed under a command (p->c->errstr says how): the
 * store is away, and the next call connects again. */
static ordo_err_t connection_lost(ordo_redis_proj_t *p, char *errstr,
                                  size_t errstr_size) {
        ordo_err_t err = unavailable(p, p->c->errstr, errstr, errstr_size);
        disconnect(p);
        return err;
}

/* An error reply to the command named what: a transient one is the
 * store away (retried), any other a refusal. */
static ordo_err_t error_reply(ordo_redis_proj_t *p, const char *what,
                              const redisReply *r, char *errstr,
                              size_t errstr_size) {
        snprintf(errstr, errstr_size, "redis: %s: %s", what, r->str);
        return transient(r->str) ? unavailable(p, r->str, errstr, errstr_size)
                                 : ORDO_ERR_REDIS;
}

static ordo_err_t load_scripts(ordo_redis_proj_t *p, char *errstr,
                               size_t errstr_size) {
        int i;

        for (i = 0; i < S__N; i++) {
                redisReply *r =
                    redisCommand(p->c, "SCRIPT LOAD %s", scripts[i]);
                ordo_err_t err = ORDO_ERR_OK;

                if (!r) {
                        return connection_lost(p, errstr, errstr_size);
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
                return connection_lost(p, errstr, errstr_size);
        }
        /* A stopped (not dead) server must not hang the consume loop. */
        redisSetTimeout(p->c, rto);
        err = ordo_redis_login(p->c, &p->login, errstr, errstr_size);
        if (err == ORDO_ERR_CONFIG && p->starting) {
                disconnect(p);
                return err;
        }
        if (!err)
                err = load_scripts(p, errstr, errstr_size);
        if (err) {
                /* Refused credentials or database, or scripts it will
                 * not load: no event can be written, none is at fault
                 * (operating.md: an outage, retried, never parked). */
                char detail[160]; /* a login's or SCRIPT LOAD's error */
                ordo_strlcpy(detail, errstr, sizeof(detail));
                err = unavailable(p, detail, errstr, errstr_size);
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
                p->cmds = calloc(CHUNK_CMDS, sizeof(*p->cmds));
                p->zcmds = calloc(CHUNK, sizeof(*p->zcmds));
        }
        if (!p || !p->host || !p->cmds || !p->zcmds) {
                ordo_redis_proj_destroy(p);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->port = port;
        memcpy(p->prefix, prefix, strlen(prefix) + 1);
        p->ttl = rejected_ttl_s;
        return p;
}

ordo_err_t ordo_redis_proj_set_login(ordo_redis_proj_t *p,
                                     const ordo_redis_login_t *login,
                                     char *errstr, size_t errstr_size) {
        ordo_err_t err;
        p->login = *login;
        disconnect(p);
        /* connect_now calls every login failure an outage, as it is
         * after a server's restart; at the start, a database the server
         * does not have is the configuration's, which no retry mends. */
        p->starting = 1;
        err = connect_now(p, errstr, errstr_size);
        p->starting = 0;
        return err == ORDO_ERR_CONFIG ? err : ORDO_ERR_OK;
}

void ordo_redis_proj_destroy(ordo_redis_proj_t *p) {
        if (!p)
                return;
        disconnect(p);
        free(p->host);
        free(p->cmds);
        free(p->zcmds);
        free(p->sent);
        free(p->chunk_m);
        free(p->batch_off);
        free(p->undo);
        free(p->seen);
        free(p);
}

void ordo_redis_proj_set_fresh(ordo_redis_proj_t *p) {
        p->fresh = 1;
}

void ordo_redis_proj_on_answer(ordo_redis_proj_t *p, ordo_store_answer_fn *fn,
                               void *arg) {
        p->answered = fn;
        p->answered_arg = arg;
}

/* FNV-1a of s, continuing from h. */
static uint64_t fnv_more(uint64_t h, const char *s) {
        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

static uint64_t key_hash(int kind, const char *id) {
        uint64_t h = fnv_more(1469598103934665603ULL ^ (uint64_t)kind, id);
        return h ? h : 1;
}

static struct seen_s *seen_slot(struct seen_s *tab, size_t cap, uint64_t h) {
        size_t i;
        for (i = h & (cap - 1); tab[i].h && tab[i].h != h;
             i = (i + 1) & (cap - 1))
                ;
        return &tab[i];
}

#define SEEN_MAX ((size_t)1 << 24) /* slots (256 MB): ~8M keys */

/* Room for one more key, else the table is full from now on. */
static void seen_room(ordo_redis_proj_t *p) {
        size_t cap = p->seen_cap ? 2 * p->seen_cap : 4096, i;
        struct seen_s *tab;

        if (p->seen_full || 2 * (p->seen_n + 1) <= p->seen_cap)
                return;
        tab = cap <= SEEN_MAX ? calloc(cap, sizeof(*tab)) : NULL;
        if (!tab) {
                p->seen_full = 1;
                return;
        }
        for (i = 0; i < p->seen_cap; i++)
                if (p->seen[i].h)
                        *seen_slot(tab, cap, p->seen[i].h) = p->seen[i];
        free(p->seen);
        p->seen = tab;
        p->seen_cap = cap;
}

/* A fresh target's entry for the key (kind, id): the newest version
 * written to it, 0 for none yet (then added). NULL when it is not in
 * the table and the table is full: unknown. */
static struct seen_s *seen_entry(ordo_redis_proj_t *p, int kind,
                                 const char *id) {
        uint64_t h = key_hash(kind, id);
        struct seen_s *e;

        seen_room(p);
        if (!p->seen_cap)
                return NULL;
        e = seen_slot(p->seen, p->seen_cap, h);
        if (!e->h) {
                if (p->seen_full)
                        return NULL;
                e->h = h;
                e->v = 0;
                p->seen_n++;
        }
        return e;
}

/* e := v, its version before noted for seen_undo. */
static void seen_set(ordo_redis_proj_t *p, struct seen_s *e, int64_t v) {
        if (p->undo_n >= p->sent_cap)
                abort(); /* a programming error: one per event */
        p->undo[p->undo_n++] = *e;
        e->v = v;
}

/* A failed call's entries as they were before it: the call applied
 * again (in order, as a fresh target's premise has it) must send what
 * it sent, though some of it landed. Else a plain write that landed
 * after one refused (out of memory, busy) would send the refused one's
 * event to the guarded script the next time, which skips it as older,
 * and an order hash would lack its fields (a review). */
static void seen_undo(ordo_redis_proj_t *p) {
        while (p->undo_n) {
                const struct seen_s *u = &p->undo[--p->undo_n];
                seen_slot(p->seen, p->seen_cap, u->h)->v = u->v;
        }
}

/* Whether this is surely a fresh target's first rejected attempt of the
 * order id (then noted): a later one goes to the script, which keeps
 * the same one of several in any order. */
static int first_rejection(ordo_redis_proj_t *p, const char *order_id) {
        struct seen_s *e = seen_entry(p, SEEN_REJECTED, order_id);
        if (!e || e->v)
                return 0;
        seen_set(p, e, 1);
        return 1;
}

/* The highest value the call has noted so far for the key hashed h
 * (-1: none), then v noted: the offset of an earnings entry's event
 * (its beneficiary and source partition) or the version of an order
 * hash's command, for the scripts' gap checks. */
static int64_t batch_previous(ordo_redis_proj_t *p, uint64_t h, int64_t v) {
        size_t i, mask = p->batch_off_cap - 1;
        int64_t prev;

        for (i = h & mask;
             p->batch_off[i].gen == p->batch_gen && p->batch_off[i].h != h;
             i = (i + 1) & mask)
                ;
        prev = p->batch_off[i].gen == p->batch_gen ? p->batch_off[i].off : -1;
        p->batch_off[i].h = h;
        p->batch_off[i].off = v > prev ? v : prev;
        p->batch_off[i].gen = p->batch_gen;
        return prev;
}

/* Whether a fresh target surely has no hash for the order yet. */
static int order_unseen(const ordo_redis_proj_t *p, const char *order_id) {
        return !p->seen_full &&
               (!p->seen_cap ||
                !seen_slot(p->seen, p->seen_cap, key_hash(FOLD_ORDER, order_id))
                     ->h);
}

/* A fresh target takes plain commands where applying a batch again, in
 * order, gives the same result (set values, not increments), for events
 * newer than what it wrote to the key: its events come once, in order,
 * and a retried batch is re-applied whole (seen_undo); an event not
 * newer (one written twice to the log) goes to the guarded script.
 * The guards are written all the same, for the live projection that
 * continues after the switch. */
static void order_hash(ordo_redis_proj_t *p, cmd_t *k, const char *order_id,
                       int64_t version) {
        struct seen_s *e =
            p->fresh ? seen_entry(p, FOLD_ORDER, order_id) : NULL;
        int64_t prev =
            batch_previous(p, key_hash(FOLD_ORDER, order_id), version);

        if (e && version > e->v) {
                begin(k);
                arg(k, "HSET");
                argf(k, "%sorder:%s", p->prefix, order_id);
                arg(k, "version");
                k->vi = k->argc;
                argf(k, "%lld", (long long)version);
                /* no version stored: a REJECTED placeholder goes whole,
                 * as in the script */
                if (!e->v)
                        k->extra = EXTRA_DEL_BEFORE;
                seen_set(p, e, version);
                return;
        }
        evalsha(p, k, S_HSET_NEWER, 1);
        argf(k, "%sorder:%s", p->prefix, order_id);
        argf(k, "%lld", (long long)prev);
        k->vi = k->argc;
        argf(k, "%lld", (long long)version);
}

static void stock(ordo_redis_proj_t *p, cmd_t *k, const char *activity_id,
                  int64_t version, int64_t remaining) {
        struct seen_s *e =
            p->fresh ? seen_entry(p, FOLD_STOCK, activity_id) : NULL;

        if (e && version > e->v) { /* one slot: the guard's tag is the key */
                begin(k);
                arg(k, "MSET");
                argf(k, "%sstock:%s", p->prefix, activity_id);
                k->xi = k->argc;
                argf(k, "%lld", (long long)remaining);
                argf(k, "{%sstock:%s}:version", p->prefix, activity_id);
                k->vi = k->argc;
                argf(k, "%lld", (long long)version);
                seen_set(p, e, version);
                return;
        }
        evalsha(p, k, S_SET_NEWER, 2);
        argf(k, "%sstock:%s", p->prefix, activity_id);
        argf(k, "{%sstock:%s}:version", p->prefix, activity_id);
        k->vi = k->argc;
        argf(k, "%lld", (long long)version);
        k->xi = k->argc;
        argf(k, "%lld", (long long)remaining);
}

/* The fields an order hash opens with, from OrderOpened or from the
 * reservation (StockReserved since its version 2): the same fields and
 * values either way, so the one written second leaves nothing of the
 * other. */
static void opening_fields(cmd_t *k, const char *user_id,
                           const char *activity_id, int64_t qty,
                           int64_t amount_cents, int64_t placed_ms,
                           int64_t pay_deadline_ms) {
        arg(k, "status");
        arg(k, "PENDING_PAYMENT");
        arg(k, "user_id");
        arg(k, user_id);
        arg(k, "activity_id");
        arg(k, activity_id);
        arg(k, "qty");
        argf(k, "%lld", (long long)qty);
        arg(k, "amount_cents");
        argf(k, "%lld", (long long)amount_cents);
        arg(k, "refunded_cents");
        arg(k, "0");
        arg(k, "placed_ms");
        argf(k, "%lld", (long long)placed_ms);
        arg(k, "pay_deadline_ms");
        argf(k, "%lld", (long long)pay_deadline_ms);
}

/* The order hash of an accepted reservation, one transactional hop before
 * the order stage opens the order (decision 0024); 0 for a reservation
 * written by StockReserved version 1, which lacks the order's terms. */
static int reserved_order(ordo_redis_proj_t *p, cmd_t *k, const ordo_msg_t *m) {
        const ordo_stock_body_t *b = &m->u.stock;

        if (m->type != ORDO_MSG_STOCK_RESERVED || b->amount_cents <= 0)
                return 0;
        /* a fresh target's REJECTED placeholder of this order id must
         * meet its script, which leaves an opened order alone */
        if (p->fresh)
                (void)seen_entry(p, FOLD_ORDER, b->order_id);
        evalsha(p, k, S_HSET_RESERVED, 1);
        argf(k, "%sorder:%s", p->prefix, b->order_id);
        opening_fields(k, b->user_id, b->activity_id, b->qty, b->amount_cents,
                       m->meta.ts_ms, b->pay_deadline_ms);
        return 1;
}

/* Commands whose rejection a buyer polling an order wants to see. */
static int order_command(const char *type) {
        return !strcmp(type, "CancelOrder") ||
               !strcmp(type, "ConfirmPayment") ||
               !strcmp(type, "ConfirmReceipt") || !strcmp(type, "RefundOrder");
}

/* The key of an earnings entry's source partition, for batch_previous. */
static uint64_t earnings_key(const char *beneficiary,
                             const ordo_event_rec_t *r) {
        /* 0xff, never in UTF-8, separates the two names */
        uint64_t h =
            (key_hash(FOLD_EARN, beneficiary) ^ 0xff) * 1099511628211ULL;

        h = fnv_more(h, r->source);
        return ((h ^ (uint32_t)r->partition) * 1099511628211ULL) | 1;
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
        arg(k, p->alone ? "1" : "0");
        k->vi = k->argc; /* where the entries start */
        argf(k, "%s/%d", r->source, (int)r->partition);
        argf(k, "%lld", (long long)r->offset);
        argf(k, "%lld",
             (long long)batch_previous(p, earnings_key(c->beneficiary_id, r),
                                       r->offset));
        argf(k, "%lld", (long long)dp);
        argf(k, "%lld", (long long)ds);
        argf(k, "%lld", (long long)dr);
        argf(k, "%s:%lld", c->order_id, (long long)c->level);
        if (r->msg->type == ORDO_MSG_COMMISSION_SETTLED)
                k->leader = c->beneficiary_id;
}

/* Seconds a rejected attempt's status has left to live: the TTL counts
 * from when the rejection was written (its record's time), not from
 * when it is applied, so that a refill or a rebuild weeks later does
 * not bring back every rejection of every past sale for another TTL (an
 * outside audit: 25,501 of them, in a store just recovering). 0 or less:
 * expired, not written. The full TTL when the record's time is unknown
 * or ahead of this clock. */
static int64_t rejected_ttl_left(const ordo_redis_proj_t *p,
                                 const ordo_event_rec_t *r) {
        int64_t age_ms = r->written_ms > 0 ? ordo_wall_ms() - r->written_ms : 0;
        if (age_ms <= 0)
                return p->ttl;
        return p->ttl - age_ms / 1000;
}

/* A rejected PlaceOrder: the attempt's status, for what is left of its
 * TTL; 0 when nothing is left. */
static int rejected_place(ordo_redis_proj_t *p, cmd_t *k,
                          const ordo_event_rec_t *r,
                          const ordo_rejected_body_t *j) {
        int64_t left = rejected_ttl_left(p, r);
        if (left <= 0)
                return 0; /* expired already: a refill, a rebuild */
        if (p->fresh && order_unseen(p, j->order_id) &&
            first_rejection(p, j->order_id)) {
                /* Not placed so far: an order placed later replaces it
                 * whole (EXTRA_DEL_BEFORE). */
                begin(k);
                arg(k, "HSET");
                argf(k, "%sorder:%s", p->prefix, j->order_id);
                arg(k, "status");
                arg(k, "REJECTED");
                arg(k, "reason");
                arg(k, j->reason);
                arg(k, "user_id");
                arg(k, j->user_id);
                k->extra = EXTRA_EXPIRE_AFTER;
                k->ttl_s = left;
                return 1;
        }
        evalsha(p, k, S_REJECT_PLACE, 1);
        argf(k, "%sorder:%s", p->prefix, j->order_id);
        arg(k, j->reason);
        argf(k, "%lld", (long long)left);
        arg(k, j->user_id);
        return 1;
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
                opening_fields(k, m->u.open.user_id, m->u.open.activity_id,
                               m->u.open.qty, m->u.open.amount_cents,
                               m->u.open.placed_ms, m->u.open.pay_deadline_ms);
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
                if (!strcmp(j->command_type, "PlaceOrder"))
                        return rejected_place(p, k, r, j);
                /* Not UNKNOWN_ORDER: the order stage decided that
                 * command before it opened the order, and whether the
                 * reservation's hash (another topic) was there yet is
                 * timing, which a rebuild would not repeat. */
                if (order_command(j->command_type) &&
                    strcmp(j->reason, "UNKNOWN_ORDER")) {
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

static int append(ordo_redis_proj_t *p, cmd_t *k) {
        char ttl[24];
        const char *argv[3] = { "DEL", k->argv[1], ttl };
        size_t len[3] = { 3, k->len[1], 0 };

        if (k->extra == EXTRA_DEL_BEFORE &&
            redisAppendCommandArgv(p->c, 2, argv, len) != REDIS_OK)
                return -1;
        if (redisAppendCommandArgv(p->c, k->argc, k->argv, k->len) != REDIS_OK)
                return -1;
        if (k->extra == EXTRA_EXPIRE_AFTER) {
                argv[0] = "EXPIRE";
                len[0] = 6;
                len[2] = (size_t)snprintf(ttl, sizeof(ttl), "%lld",
                                          (long long)k->ttl_s);
                if (redisAppendCommandArgv(p->c, 3, argv, len) != REDIS_OK)
                        return -1;
        }
        return 0;
}

/* The first error reply of a pipeline decides its error. */
static void reply_error(ordo_redis_proj_t *p, const char *name,
                        const redisReply *r, ordo_err_t *err, int *noscript,
                        char *errstr, size_t errstr_size) {
        if (r->type != REDIS_REPLY_ERROR || *err != ORDO_ERR_OK)
                return;
        if (!strncmp(r->str, "NOSCRIPT", 8)) {
                *noscript = 1;
                *err = ORDO_ERR_REDIS;
        } else if (transient(r->str)) {
                *err = unavailable(p, r->str, errstr, errstr_size);
        } else {
                *err = ORDO_ERR_REDIS;
        }
        if (*err == ORDO_ERR_REDIS)
                snprintf(errstr, errstr_size, "redis: %s: %s", name, r->str);
}

/* Queues n commands and their extras; -1 when the connection failed. */
static int send_cmds(ordo_redis_proj_t *p, cmd_t *cmds, size_t n) {
        size_t i;

        for (i = 0; i < n; i++)
                if (append(p, &cmds[i]))
                        return -1;
        return 0;
}

/* Writes out what is queued without waiting for the replies, so that
 * Redis works while the next chunk is built. -1 when it failed. */
static int flush_out(ordo_redis_proj_t *p) {
        int done = 0;

        while (!done)
                if (redisBufferWrite(p->c, &done) != REDIS_OK)
                        return -1;
        return 0;
}

/* A script's total: the earnings script answers the exact decimal string
 * (a Lua number is not exact past 2^53); 0 for any other reply. */
static long long reply_total(const redisReply *r) {
        if (r->type == REDIS_REPLY_INTEGER)
                return r->integer;
        if (r->type == REDIS_REPLY_STRING)
                return strtoll(r->str, NULL, 10);
        return 0;
}

/* Reads the replies of n sent commands (and their extras), every one, so
 * the connection stays in step whatever fails; the first error reply
 * sets *err. *noscript is set when the server lost our scripts (a
 * restart or SCRIPT FLUSH since we connected). totals[i] (may be NULL)
 * receives reply_total of command i. -1 when the connection
 * failed: then disconnected, *err is ORDO_ERR_UNAVAILABLE. */
static int recv_cmds(ordo_redis_proj_t *p, const sent_t *cmds, size_t n,
                     long long *totals, ordo_err_t *err, int *noscript,
                     char *errstr, size_t errstr_size) {
        size_t i;

        for (i = 0; i < n; i++) {
                int j, replies = 1 + (cmds[i].extra != EXTRA_NONE);

                for (j = 0; j < replies; j++) {
                        redisReply *r = NULL;
                        int main_reply =
                            j == (cmds[i].extra == EXTRA_DEL_BEFORE);

                        if (redisGetReply(p->c, (void **)&r) != REDIS_OK ||
                            !r) {
                                *err = connection_lost(p, errstr, errstr_size);
                                return -1;
                        }
                        if (totals && main_reply)
                                totals[i] = reply_total(r);
                        reply_error(p, cmds[i].name, r, err, noscript, errstr,
                                    errstr_size);
                        freeReplyObject(r);
                }
        }
        if (p->answered)
                p->answered(p->answered_arg);
        return 0;
}

/* The settled totals of a chunk's settlements onto the leaderboard, into
 * p->zcmds. Returns how many. */
static size_t queue_leaderboard(ordo_redis_proj_t *p, const sent_t *cmds,
                                const long long *totals, size_t n) {
        size_t i, m = 0;

        for (i = 0; i < n; i++) {
                cmd_t *k = &p->zcmds[m];
                size_t j;

                if (!cmds[i].leader || totals[i] <= 0)
                        continue;
                /* One ZADD per user and chunk: the highest total (the
                 * first of equal ones). */
                for (j = 0; j < n; j++)
                        if (j != i && cmds[j].leader &&
                            !strcmp(cmds[j].leader, cmds[i].leader) &&
                            (totals[j] > totals[i] ||
                             (totals[j] == totals[i] && j < i)))
                                break;
                if (j < n)
                        continue;
                begin(k);
                arg(k, "ZADD");
                argf(k, "%sleaderboard:settled", p->prefix);
                arg(k, "GT");
                argf(k, "%lld", totals[i]);
                arg(k, cmds[i].leader);
                m++;
        }
        return m;
}

/* Which key an event's command writes under a version guard, so that the
 * chunk's commands of one key may be folded into one. */
static int fold_kind(const ordo_msg_t *m, const char **id) {
        switch (m->type) {
        case ORDO_MSG_ACTIVITY_CREATED:
                *id = m->u.activity.activity_id;
                return FOLD_STOCK;
        case ORDO_MSG_STOCK_RESERVED:
        case ORDO_MSG_STOCK_RELEASED:
                *id = m->u.stock.activity_id;
                return FOLD_STOCK;
        case ORDO_MSG_ORDER_OPENED:
                *id = m->u.open.order_id;
                return FOLD_ORDER;
        case ORDO_MSG_ORDER_PAID:
                *id = m->u.payment.order_id;
                return FOLD_ORDER;
        case ORDO_MSG_ORDER_CANCELLED:
                *id = m->u.release.order_id;
                return FOLD_ORDER;
        case ORDO_MSG_ORDER_RECEIVED:
                *id = m->u.received.order_id;
                return FOLD_ORDER;
        case ORDO_MSG_ORDER_REFUNDED:
                *id = m->u.refund.order_id;
                return FOLD_ORDER;
        case ORDO_MSG_ORDER_SETTLED:
                *id = m->u.settled.order_id;
                return FOLD_ORDER;
        case ORDO_MSG_COMMISSION_ACCRUED:
        case ORDO_MSG_COMMISSION_REVERSED:
        case ORDO_MSG_COMMISSION_SETTLED:
                *id = m->u.commission.beneficiary_id;
                return FOLD_EARN;
        default:
                return FOLD_NONE;
        }
}

/* Argument i of k := the bytes of v, copied into k's buffer. 0 when the
 * buffer is full (then the caller does not fold). */
static int set_arg(cmd_t *k, int i, const char *v, size_t len) {
        if (k->used + len + 1 > sizeof(k->buf))
                return 0;
        memcpy(k->buf + k->used, v, len);
        k->buf[k->used + len] = '\0';
        k->argv[i] = k->buf + k->used;
        k->len[i] = len;
        k->used += len + 1;
        return 1;
}

/* Folds s (the same script on the same key, a newer or older event of the
 * same aggregate) into k. Both are "EVALSHA sha nkeys KEYS... version
 * ARGS..." (or both the plain HSET / MSET of a fresh target, with the
 * version and value at ->vi and ->xi; a plain one and a script do not
 * fold): stock's ARGS is the value, which the newer version decides;
 * an order hash's ARGS are field/value pairs, where a newer event's
 * value wins and an event not newer than k is dropped (events of one
 * aggregate come in version order, unless one was copied into the log
 * again). Applying k is then what applying the two one after the other
 * under their guards gives, whatever version is stored. Earnings append
 * s's entry: the script guards each by its own partition offset. 0 when
 * k has no room: not folded. */
static int fold(cmd_t *k, const cmd_t *s, int kind) {
        int vi = k->vi, si = s->vi, i, j;
        long long kv, sv;
        size_t need = 0;

        if (strcmp(k->argv[0], s->argv[0])) /* a plain one and a script */
                return 0;
        kv = atoll(k->argv[vi]);
        sv = atoll(s->argv[si]);

        for (i = s->xi && s->xi < si ? s->xi : si; i < s->argc; i++)
                need += s->len[i] + 1;
        if (k->used + need > sizeof(k->buf) || k->argc + s->argc > ARGS_MAX)
                return 0;
        if (kind == FOLD_EARN) { /* one more entry; the script orders them */
                for (i = si; i < s->argc; i++)
                        set_arg(k, k->argc++, s->argv[i], s->len[i]);
                if (s->leader)
                        k->leader = s->leader;
                return 1;
        }
        if (kind == FOLD_STOCK) {
                if (sv > kv)
                        return set_arg(k, vi, s->argv[si], s->len[si]) &&
                               set_arg(k, k->xi, s->argv[s->xi], s->len[s->xi]);
                return 1;
        }
        if (sv <= kv) /* a copy written later: its guard refuses it */
                return 1;
        set_arg(k, vi, s->argv[si], s->len[si]);
        for (i = si + 1; i + 1 < s->argc; i += 2) {
                for (j = vi + 1; j + 1 < k->argc; j += 2)
                        if (k->len[j] == s->len[i] &&
                            !memcmp(k->argv[j], s->argv[i], s->len[i]))
                                break;
                if (j + 1 >= k->argc) {
                        k->argv[k->argc] = s->argv[i]; /* a literal name */
                        k->len[k->argc] = s->len[i];
                        k->argc += 2;
                }
                set_arg(k, j + 1, s->argv[i + 1], s->len[i + 1]);
        }
        return 1;
}

/* dst := src, its arguments in src's buffer now in dst's. */
static void copy_cmd(cmd_t *dst, const cmd_t *src) {
        uintptr_t lo = (uintptr_t)src->buf, hi = lo + sizeof(src->buf);
        int i;

        *dst = *src;
        for (i = 0; i < src->argc; i++)
                if ((uintptr_t)src->argv[i] >= lo &&
                    (uintptr_t)src->argv[i] < hi)
                        dst->argv[i] =
                            dst->buf + ((uintptr_t)src->argv[i] - lo);
}

/* Builds the command of r into the chunk: folded into the chunk's command
 * of the same key when there is one, else a new command. Returns 1 when
 * a new command was added at cmds[m]. */
static int build_folded(ordo_redis_proj_t *p, cmd_t *cmds,
                        const ordo_event_rec_t *r, size_t m) {
        const char *id = NULL;
        int kind = fold_kind(r->msg, &id);
        size_t i;

        if (kind == FOLD_NONE)
                return build(p, &cmds[m], r);
        i = key_hash(kind, id) & (2 * CHUNK - 1);
        for (; p->fold_cmd[i]; i = (i + 1) & (2 * CHUNK - 1))
                if (p->fold_kind[i] == kind && !strcmp(p->fold_id[i], id))
                        break;
        if (p->fold_cmd[i]) {
                if (!build(p, &p->scratch, r))
                        return 0;
                if (fold(&cmds[p->fold_cmd[i] - 1], &p->scratch, kind))
                        return 0;
                /* No room (or a plain one and a script): the built one
                 * is a new command, the key's from now on. Not built
                 * again: a fresh target counts an event once. */
                copy_cmd(&cmds[m], &p->scratch);
        } else if (!build(p, &cmds[m], r)) {
                return 0;
        }
        p->fold_id[i] = id;
        p->fold_kind[i] = kind;
        p->fold_cmd[i] = m + 1;
        return 1;
}

/* Builds n events into cmds, folded: *m commands. */
static ordo_err_t build_chunk(ordo_redis_proj_t *p, cmd_t *cmds,
                              const ordo_event_rec_t *recs, size_t n, size_t *m,
                              char *errstr, size_t errstr_size) {
        size_t i;

        *m = 0;
        memset(p->fold_cmd, 0, sizeof(p->fold_cmd));
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
                if (build_folded(p, cmds, &recs[i], *m))
                        (*m)++;
                if (reserved_order(p, &cmds[*m], msg))
                        (*m)++;
        }
        return ORDO_ERR_OK;
}

/* An empty table of the batch's offsets (batch_previous), with room for
 * every event of the largest call so far (sent_cap) at half load: a new
 * generation, so that emptying it costs nothing. */
static ordo_err_t batch_off_clear(ordo_redis_proj_t *p, char *errstr,
                                  size_t errstr_size) {
        size_t cap = 64;
        while (cap < 2 * p->sent_cap)
                cap <<= 1;
        if (cap > p->batch_off_cap) {
                void *t = realloc(p->batch_off, cap * sizeof(*p->batch_off));
                if (!t) {
                        snprintf(errstr, errstr_size, "out of memory");
                        return ORDO_ERR_NOMEM;
                }
                p->batch_off = t;
                p->batch_off_cap = cap;
                memset(p->batch_off, 0, cap * sizeof(*p->batch_off));
                p->batch_gen = 0;
        }
        if (++p->batch_gen == 0) { /* wrapped: generation 0 is empty */
                memset(p->batch_off, 0, cap * sizeof(*p->batch_off));
                p->batch_gen = 1;
        }
        return ORDO_ERR_OK;
}

/* Room to remember the commands of n events sent in one call (at most
 * two each) and the fresh entries they change, and an empty table of the
 * batch's offsets. */
static ordo_err_t sent_room(ordo_redis_proj_t *p, size_t n, char *errstr,
                            size_t errstr_size) {
        sent_t *sent;
        size_t *chunk_m;
        struct seen_s *undo;

        if (n <= p->sent_cap)
                return batch_off_clear(p, errstr, errstr_size);
        sent = realloc(p->sent, 2 * n * sizeof(*sent));
        if (sent)
                p->sent = sent;
        chunk_m = realloc(p->chunk_m, (n / CHUNK + 1) * sizeof(*chunk_m));
        if (chunk_m)
                p->chunk_m = chunk_m;
        undo = realloc(p->undo, n * sizeof(*undo));
        if (undo)
                p->undo = undo;
        if (!sent || !chunk_m || !undo) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_NOMEM;
        }
        p->sent_cap = n;
        return batch_off_clear(p, errstr, errstr_size);
}

/* One pipeline for the whole call: each chunk of CHUNK events is sent as
 * soon as it is built (Redis applies it while the next is built), then
 * every reply is read; a chunk's leaderboard writes, which need its
 * earnings totals, go out while the later chunks' replies are read. One
 * round trip per call, whatever its size: under CPU contention each wait
 * costs a scheduling delay. After an error nothing more is sent; what
 * was sent is read. */
static ordo_err_t apply_once(ordo_redis_proj_t *p, const ordo_event_rec_t *recs,
                             size_t n, int *noscript, char *errstr,
                             size_t errstr_size) {
        static const sent_t zadd = { "ZADD", NULL, EXTRA_NONE };
        long long totals[CHUNK_CMDS];
        size_t off, i, m, chunks = 0, first = 0, zn = 0;
        ordo_err_t err;

        *noscript = 0;
        p->undo_n = 0; /* what a call that landed changed stays */
        err = connect_now(p, errstr, errstr_size);
        if (!err)
                err = sent_room(p, n, errstr, errstr_size);
        for (off = 0; off < n && !err; off += CHUNK) {
                size_t len = n - off < CHUNK ? n - off : CHUNK;

                err = build_chunk(p, p->cmds, recs + off, len, &m, errstr,
                                  errstr_size);
                if (err || !m)
                        continue;
                for (i = 0; i < m; i++) {
                        sent_t *e = &p->sent[first + i];
                        e->name = p->cmds[i].argv[0];
                        e->leader = p->cmds[i].leader;
                        e->extra = p->cmds[i].extra;
                }
                if (send_cmds(p, p->cmds, m) || flush_out(p))
                        goto lost;
                p->chunk_m[chunks++] = m;
                first += m;
        }
        for (i = 0, first = 0; i < chunks; first += p->chunk_m[i++]) {
                size_t z;

                if (recv_cmds(p, p->sent + first, p->chunk_m[i], totals, &err,
                              noscript, errstr, errstr_size))
                        return err;
                if (err)
                        continue;
                z = queue_leaderboard(p, p->sent + first, totals,
                                      p->chunk_m[i]);
                if (send_cmds(p, p->zcmds, z))
                        goto lost;
                zn += z;
        }
        for (i = 0; i < zn; i++)
                if (recv_cmds(p, &zadd, 1, NULL, &err, noscript, errstr,
                              errstr_size))
                        return err;
        return err;
lost:
        return connection_lost(p, errstr, errstr_size);
}

/* An idle projection's check that Redis still answers: a server
 * restarted since dropped our connection, which only a command finds. */
static ordo_err_t ping(ordo_redis_proj_t *p, char *errstr, size_t errstr_size) {
        ordo_err_t err = connect_now(p, errstr, errstr_size);
        redisReply *r;

        if (err)
                return err;
        if (!(r = redisCommand(p->c, "PING"))) {
                return connection_lost(p, errstr, errstr_size);
        }
        if (r->type == REDIS_REPLY_ERROR && transient(r->str))
                err = unavailable(p, r->str, errstr, errstr_size);
        freeReplyObject(r);
        return err;
}

ordo_err_t ordo_redis_proj_mark(ordo_redis_proj_t *p, const char *put,
                                char tok[ORDO_MARK_MAX], char *errstr,
                                size_t errstr_size) {
        ordo_err_t err = connect_now(p, errstr, errstr_size);
        redisReply *r;
        int i;

        tok[0] = '\0';
        /* put unless there is one (two instances starting at once), then
         * what is there */
        for (i = put ? 0 : 1; i < 2 && !err; i++) {
                r = i ? redisCommand(p->c, "GET %smark", p->prefix)
                      : redisCommand(p->c, "SET %smark %s NX", p->prefix, put);
                if (!r) {
                        return connection_lost(p, errstr, errstr_size);
                }
                if (r->type == REDIS_REPLY_ERROR && i && !transient(r->str)) {
                        /* WRONGTYPE: not our mark, so none (it silenced
                         * the check for good: an outside audit) */
                } else if (r->type == REDIS_REPLY_ERROR) {
                        err =
                            error_reply(p, "the mark", r, errstr, errstr_size);
                } else if (i && r->type == REDIS_REPLY_STRING)
                        snprintf(tok, ORDO_MARK_MAX, "%.*s", (int)r->len,
                                 r->str);
                freeReplyObject(r);
        }
        return err;
}

/* The heartbeats go by the server's clock (TIME), so that a drop asked
 * from another machine compares them with the same clock; HSET before
 * PEXPIRE, so that a key of another type there is not given a TTL.
 * Those that ended long ago (ARGV[3], ORDO_ALIVE_FORGET_MS) are removed. */
static const char alive_renew_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('HSET', KEYS[1], ARGV[1],\n"
    "           string.format('%d', now + tonumber(ARGV[2])))\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "local all = redis.call('HGETALL', KEYS[1])\n"
    "for i = 1, #all, 2 do\n"
    "  if (tonumber(all[i + 1]) or 0) < now - tonumber(ARGV[3]) then\n"
    "    redis.call('HDEL', KEYS[1], all[i])\n"
    "  end\n"
    "end\n"
    "return 1\n";
static const char alive_left_lua[] =
    "if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return 0 end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local left = 0\n"
    "for _, v in ipairs(redis.call('HVALS', KEYS[1])) do\n"
    "  local l = (tonumber(v) or 0) - now\n"
    "  if l > left then left = l end\n"
    "end\n"
    "return left\n";

ordo_err_t ordo_redis_proj_alive(ordo_redis_proj_t *p, const char *instance,
                                 int64_t ttl_ms, char *errstr,
                                 size_t errstr_size) {
        ordo_err_t err = connect_now(p, errstr, errstr_size);
        redisReply *r;

        if (err)
                return err;
        r = ttl_ms > 0 ? redisCommand(p->c, "EVAL %s 1 %smark:alive %s %lld %d",
                                      alive_renew_lua, p->prefix, instance,
                                      (long long)ttl_ms, ORDO_ALIVE_FORGET_MS)
                       : redisCommand(p->c, "HDEL %smark:alive %s", p->prefix,
                                      instance);
        if (!r) {
                return connection_lost(p, errstr, errstr_size);
        }
        if (r->type == REDIS_REPLY_ERROR)
                err = error_reply(p, "the heartbeat", r, errstr, errstr_size);
        freeReplyObject(r);
        return err;
}

ordo_err_t ordo_redis_proj_apply(ordo_redis_proj_t *p,
                                 const ordo_event_rec_t *recs, size_t n,
                                 char *errstr, size_t errstr_size) {
        int attempt, noscript = 0;
        ordo_err_t err = ORDO_ERR_OK;

        if (!p || (n && !recs)) {
                snprintf(errstr, errstr_size, "redis: invalid arguments");
                return ORDO_ERR_INVALID_ARG;
        }
        if (!n)
                return ping(p, errstr, errstr_size);
        p->alone = n == 1; /* lua_earn: a refusal is this event's own */
        /* Every write is guarded, or gives the same result applied again
         * in order (a fresh target), so applying the events again after
         * the server forgot our scripts is safe. */
        for (attempt = 0; attempt < 2; attempt++) {
                err = apply_once(p, recs, n, &noscript, errstr, errstr_size);
                if (err)
                        seen_undo(p);
                if (!noscript)
                        break;
                disconnect(p); /* reconnecting reloads the scripts */
        }
        return err;
}

/* ---- a whole prefix: whether it is used, and dropping it ------------- */

void ordo__redis_glob_escape(const char *s, char *out) {
        for (; *s; s++) {
                if (strchr("*?[]\\^", *s))
                        *out++ = '\\';
                *out++ = *s;
        }
        *out = '\0';
}

/* Calls fn for every key matching pattern, in SCAN batches; stops early
 * when fn returns non-zero. -1 on a Redis error. */
static int scan_keys(redisContext *c, const char *pattern,
                     int (*fn)(redisContext *, redisReply *, void *),
                     void *opaque) {
        char cursor[32] = "0";
        do {
                redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 1000",
                                             cursor, pattern);
                int stop;
                if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                        if (r)
                                freeReplyObject(r);
                        return -1;
                }
                snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
                stop = r->element[1]->elements && fn(c, r->element[1], opaque);
                freeReplyObject(r);
                if (stop)
                        return 0;
        } while (strcmp(cursor, "0"));
        return 0;
}

/* "mark" or "mark:alive" after the prefix: no read model. */
static int is_mark(const char *rest, size_t len) {
        return (len == 4 && !memcmp(rest, "mark", 4)) ||
               (len == 10 && !memcmp(rest, "mark:alive", 10));
}

/* The mark alone is no read model: a target emptied under the live
 * projection, which wrote its mark again, is still empty. */
static int found_any(redisContext *c, redisReply *keys, void *opaque) {
        const char *prefix = *(const char **)opaque;
        size_t i, plen;
        (void)c;
        if (!prefix) /* found under the other pattern */
                return 1;
        plen = strlen(prefix);
        for (i = 0; i < keys->elements; i++) {
                const redisReply *k = keys->element[i];
                if (k->len < plen || !is_mark(k->str + plen, k->len - plen)) {
                        *(const char **)opaque = NULL;
                        return 1;
                }
        }
        return 0;
}

static int ends_with(const char *s, size_t len, const char *end) {
        size_t n = strlen(end);
        return len >= n && !memcmp(s + len - n, end, n);
}

int ordo__redis_key_is_ours(const char *prefix, const char *key, size_t len) {
        size_t plen = strlen(prefix);
        const char *rest;

        if (len > plen && !memcmp(key, prefix, plen)) {
                rest = key + plen;
                len -= plen;
                return is_mark(rest, len) ||
                       (len > 6 && !memcmp(rest, "stock:", 6)) ||
                       (len > 6 && !memcmp(rest, "order:", 6)) ||
                       (len > 9 && !memcmp(rest, "earnings:", 9)) ||
                       (len == 19 && !memcmp(rest, "leaderboard:settled", 19));
        }
        if (len > plen + 1 && key[0] == '{' && !memcmp(key + 1, prefix, plen)) {
                rest = key + 1 + plen;
                len -= plen + 1;
                return (len >= 6 + 1 + 9 && !memcmp(rest, "stock:", 6) &&
                        ends_with(rest, len, "}:version")) ||
                       (len >= 9 + 1 + 9 && !memcmp(rest, "earnings:", 9) &&
                        ends_with(rest, len, "}:offsets"));
        }
        return 0;
}

/* A drop's walk over a prefix: first every key is checked to be one of
 * ours, then (delete) they go. */
typedef struct {
        const char *prefix;
        int delete, failed;
        long long foreign, ours;
        char first_foreign[96];
} drop_walk_t;

static int drop_keys(redisContext *c, redisReply *keys, void *opaque) {
        drop_walk_t *w = opaque;
        size_t i, sent = 0;

        for (i = 0; i < keys->elements; i++) {
                const redisReply *k = keys->element[i];
                if (!ordo__redis_key_is_ours(w->prefix, k->str, k->len)) {
                        if (!w->foreign++)
                                snprintf(w->first_foreign,
                                         sizeof(w->first_foreign), "%.*s",
                                         (int)(k->len < 80 ? k->len : 80),
                                         k->str);
                } else if (w->delete) {
                        redisAppendCommand(c, "UNLINK %b", k->str,
                                           (size_t)k->len);
                        sent++;
                } else {
                        w->ours++;
                }
        }
        for (i = 0; i < sent; i++) {
                redisReply *r = NULL;
                if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                        w->failed = 1;
                        return 1;
                }
                freeReplyObject(r);
        }
        return 0;
}

/* For each pattern "<prefix>*" and "{<prefix>*" (guard keys): fn. The
 * prefix is matched literally (its glob characters escaped); one longer
 * than PREFIX_MAX is an error. */
static int redis_each_prefix_key(redisContext *c, const char *prefix,
                                 int (*fn)(redisContext *, redisReply *,
                                           void *),
                                 void *opaque) {
        char esc[2 * PREFIX_MAX + 1], pat[sizeof(esc) + 2];
        if (strlen(prefix) > PREFIX_MAX)
                return -1;
        ordo__redis_glob_escape(prefix, esc);
        snprintf(pat, sizeof(pat), "%s*", esc);
        if (scan_keys(c, pat, fn, opaque))
                return -1;
        snprintf(pat, sizeof(pat), "{%s*", esc);
        return scan_keys(c, pat, fn, opaque);
}

int ordo_redis_prefix_used(const ordo_config_t *conf, const char *prefix,
                           char *errstr, size_t errstr_size) {
        int used = 0;
        const char *unseen = prefix; /* NULL once a key is found */
        redisContext *c = ordo_redis_connect(conf, 10, errstr, errstr_size);
        if (!c)
                return -1;
        if (redis_each_prefix_key(c, prefix, found_any, &unseen)) {
                snprintf(errstr, errstr_size, "redis SCAN of %.80s failed",
                         prefix);
                used = -1;
        } else
                used = unseen == NULL;
        redisFree(c);
        return used;
}

int64_t ordo_redis_prefix_alive_left(const ordo_config_t *conf,
                                     const char *prefix, char *errstr,
                                     size_t errstr_size) {
        int64_t left = -1;
        redisReply *r;
        redisContext *c = ordo_redis_connect(conf, 10, errstr, errstr_size);
        if (!c)
                return -1;
        r = redisCommand(c, "EVAL %s 1 %smark:alive", alive_left_lua, prefix);
        if (r && r->type == REDIS_REPLY_INTEGER)
                left = r->integer;
        else
                snprintf(errstr, errstr_size,
                         "redis: reading %.80smark:alive: %s", prefix,
                         r && r->type == REDIS_REPLY_ERROR ? r->str
                                                           : c->errstr);
        if (r)
                freeReplyObject(r);
        redisFree(c);
        return left;
}

typedef struct {
        size_t plen; /* the name's start, shared by every target found */
        ordo_target_fn *fn;
        void *arg;
        char seen[ORDO_TARGETS_MAX][PREFIX_MAX + 1];
        int n;
} targets_walk_t;

/* A target is its keys' start up to the first ':' after the name's
 * start; each said once. */
static int each_target(redisContext *c, redisReply *keys, void *opaque) {
        targets_walk_t *w = opaque;
        size_t i;
        int j;
        (void)c;
        for (i = 0; i < keys->elements && w->n < ORDO_TARGETS_MAX; i++) {
                const redisReply *k = keys->element[i];
                const char *colon =
                    k->type == REDIS_REPLY_STRING && k->len >= w->plen
                        ? memchr(k->str + w->plen, ':', k->len - w->plen)
                        : NULL;
                size_t len = colon ? (size_t)(colon - k->str) + 1 : 0;
                if (!len || len > PREFIX_MAX)
                        continue;
                for (j = 0; j < w->n; j++)
                        if (!strncmp(w->seen[j], k->str, len) &&
                            !w->seen[j][len])
                                break;
                if (j == w->n) {
                        memcpy(w->seen[w->n], k->str, len);
                        w->seen[w->n++][len] = '\0';
                }
        }
        return w->n == ORDO_TARGETS_MAX;
}

int ordo_redis_prefixes_named(const ordo_config_t *conf, const char *start,
                              ordo_target_fn *fn, void *arg, char *errstr,
                              size_t errstr_size) {
        targets_walk_t *w = calloc(1, sizeof(*w));
        char esc[2 * PREFIX_MAX + 1], pat[sizeof(esc) + 2];
        redisContext *c;
        int i, rc = 0;
        if (!w || strlen(start) > PREFIX_MAX) {
                free(w);
                snprintf(errstr, errstr_size, "redis: bad name start");
                return -1;
        }
        if (!(c = ordo_redis_connect(conf, 10, errstr, errstr_size))) {
                free(w);
                return -1;
        }
        w->plen = strlen(start);
        ordo__redis_glob_escape(start, esc);
        snprintf(pat, sizeof(pat), "%s*", esc);
        if (scan_keys(c, pat, each_target, w)) {
                snprintf(errstr, errstr_size, "redis: SCAN of %.80s* failed",
                         start);
                rc = -1;
        }
        for (i = 0; !rc && i < w->n; i++)
                fn(arg, w->seen[i]);
        redisFree(c);
        free(w);
        return rc;
}

ordo_err_t ordo_redis_prefix_drop(const ordo_config_t *conf, const char *prefix,
                                  char *errstr, size_t errstr_size) {
        drop_walk_t w = { prefix, 0, 0, 0, 0, "" };
        ordo_err_t err = ORDO_ERR_OK;
        redisContext *c = ordo_redis_connect(conf, 10, errstr, errstr_size);
        if (!c)
                return ORDO_ERR_UNAVAILABLE;
        /* A key under the prefix that is not a read model's (a typo'd
         * prefix on a shared Redis: "s" would match "session:...") stops
         * the whole drop before anything goes. */
        if (redis_each_prefix_key(c, prefix, drop_keys, &w) || w.failed) {
                snprintf(errstr, errstr_size, "redis: SCAN of %.80s* failed",
                         prefix);
                err = ORDO_ERR_REDIS;
        } else if (!w.foreign && !w.ours) {
                /* as MongoDB's: a typo must not look like a drop */
                snprintf(errstr, errstr_size,
                         "redis: no key under \"%.80s\" holds a read model; "
                         "nothing dropped",
                         prefix);
                err = ORDO_ERR_INVALID_ARG;
        } else if (w.foreign) {
                /* "ordo2" for "ordo2:": its keys look foreign to it */
                size_t n = strlen(prefix);
                int colon = n < sizeof(w.first_foreign) - 1 &&
                            w.first_foreign[n] == ':';
                snprintf(errstr, errstr_size,
                         "redis: %lld key(s) under \"%.80s\" are not ordo read "
                         "model keys (the first: \"%s\"); nothing deleted: "
                         "is the prefix right?%s%.80s%s",
                         w.foreign, prefix, w.first_foreign,
                         colon ? " (prefixes end with their separator: \"" : "",
                         colon ? prefix : "", colon ? ":\"?)" : "");
                err = ORDO_ERR_INVALID_ARG;
        } else {
                w.delete = 1;
                if (redis_each_prefix_key(c, prefix, drop_keys, &w) ||
                    w.failed) {
                        snprintf(errstr, errstr_size,
                                 "redis: deleting %.80s* failed", prefix);
                        err = ORDO_ERR_REDIS;
                }
        }
        redisFree(c);
        return err;
}
