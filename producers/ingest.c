/*
 * ordo ingest: the HTTP gateway. See ingest.h for what it is tuned for and
 * docs/command-contract.md ("HTTP gateway") for the contract.
 *
 * A POST goes through these steps, one static function each:
 *   door      on the headers, before any body byte is read: path, method,
 *             Content-Length (413), key id and timestamp (401), room in
 *             the budget of unauthenticated body bytes, in all and for
 *             the peer's address (budget.h; 503); the body
 *             gets a deadline (ingest.body.timeout.ms) that no byte renews.
 *             A refusal here is sent once the body has been read and
 *             dropped (refuse_unread), so that the client reads it
 *   receive   the body arrives in pieces, held against that budget; past
 *             ingest.body.max it is dropped and the answer will be 413
 *   auth      X-Ordo-Signature over the path as sent, replay set -> 401
 *   prepare   every line validated, stamped, given ids and encoded into
 *             one arena; any fault -> 400 (413 for a command over 64 KiB),
 *             a type outside the key's scope -> 403; nothing sent (a
 *             batch is all or nothing at the door)
 *   limit     token buckets per key, per peer and (PlaceOrder) per user_id
 *             -> 429, nothing sent and no token spent
 *   produce   every line handed to librdkafka; the connection is suspended
 *   (wait)    the delivery reports arrive on the poller thread; the last
 *             one resumes the connection
 *   answer    202 if Kafka acknowledged every line, else 503 + Retry-After
 */
#include "ingest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admit.h"
#include "budget.h"
#include "codec.h"
#include "hmac.h"
#include "json_flat.h"
#include "kafka.h"
#include "kafka_io.h"
#include "keys.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "seen.h"
#include "validate.h"
#include "clock.h"

#define PATH_ONE         "/v1/commands"
#define PATH_BATCH       "/v1/commands:batch"
#define UNAVAILABLE_S    "1" /* Retry-After of a 503, seconds */
#define SHUTDOWN_WAIT_MS 10000
#define ANSWER_WAIT_MS   2000 /* then, for the answers to be written */
/* One encoded command; validate caps the JSON at 64 KiB. */
#define ENCODED_MAX    8192
#define ERRORS_LISTED  1000 /* refused lines listed in one 400 answer */
#define PATH_MAX_SEEN  256  /* longer raw paths are 404 anyway */
#define IDLE_TIMEOUT_S 60   /* between requests of a kept-alive connection */
/* A refused request announcing a longer body is answered at once, its
 * body unread (refuse_unread). */
#define DROP_MAX (8 << 20)
/* Refused requests logged at most LOG_RATE a second, LOG_BURST at once;
 * the rest are counted and the next line says how many were left out. */
#define LOG_RATE  10
#define LOG_BURST 50

/* ---- metrics ------------------------------------------------------------ */

static const unsigned statuses[] = { 200, 202, 400, 401, 403, 404, 405,
                                     413, 415, 429, 500, 501, 503 };
#define N_STATUSES (sizeof(statuses) / sizeof(statuses[0]))

/* Upper bounds in microseconds of the produce latency histogram. */
static const int64_t bucket_us[] = { 500,     1000,    2000,    5000,    10000,
                                     20000,   50000,   100000,  250000,  500000,
                                     1000000, 2500000, 5000000, 10000000 };
#define N_BUCKETS (sizeof(bucket_us) / sizeof(bucket_us[0]))

typedef struct {
        atomic_uint_fast64_t requests[N_STATUSES + 1]; /* last: other */
        atomic_uint_fast64_t latency[N_BUCKETS + 1];   /* last: +Inf */
        atomic_uint_fast64_t latency_sum_us;
        atomic_uint_fast64_t acked, failed;
        /* Requests that got no answer: the client went away first, or
         * the body missed its deadline (status="disconnected", "timeout"). */
        atomic_uint_fast64_t disconnected, timed_out;
        /* Answered by libmicrohttpd before ordo saw it (status="library"). */
        atomic_uint_fast64_t by_library;
} metrics_t;

/* ---- the gateway -------------------------------------------------------- */

struct ordo_ingest_s {
        struct MHD_Daemon *mhd;
        rd_kafka_t *rk;
        pthread_t poller;
        int poller_started;
        atomic_int stop_poller;
        pthread_t watcher; /* watch_topics */
        int watcher_started;
        atomic_int missing; /* command topics Kafka has not: 1 << topic */
        /* Kafka's metadata at the watcher's last look (/healthz answers
         * from it; the first is taken before the gateway listens). */
        atomic_int brokers, brokers_err;
        pthread_key_t codec_key;
        int codec_key_made;
        char topics[ORDO_TOPIC__COUNT][256];
        char keys_path[1024]; /* "": authentication off */
        pthread_mutex_t keys_lock;
        int keys_lock_made;
        ordo_keyset_t *keys; /* swapped whole on reload (SIGHUP) */
        int64_t window_ms, body_max, body_timeout_ms;
        int64_t unauth_max;      /* ingest.unauth.bytes.max */
        int64_t unauth_peer_max; /* ingest.unauth.peer.bytes.max */
        ordo_budget_t *unauth;   /* body bytes held before their signature */
        ordo_ratelimit_t *rl;    /* per user_id (PlaceOrder) */
        ordo_ratelimit_t *rl_key, *rl_peer, *rl_log;
        pthread_mutex_t limit_lock; /* check every limit, then spend */
        int limit_lock_made;
        atomic_uint_fast64_t log_skipped;
        ordo_seen_t *seen;
        ordo_door_t door; /* ids and stamps (admit.h) */
        int door_made;
        atomic_int stopping;
        atomic_long inflight; /* requests with messages not yet reported */
        atomic_long waiting;  /* requests that waited for Kafka, not done */
        int port;
        metrics_t metrics;
};

/* ---- one request -------------------------------------------------------- */

/* An extra header of an answer: Retry-After (429, 503) or Allow (405). */
typedef struct {
        const char *name, *value;
} header_t;

#define NO_HEADER      ((header_t){ NULL, NULL })
#define RETRY_AFTER(v) ((header_t){ MHD_HTTP_HEADER_RETRY_AFTER, (v) })
#define ALLOW(v)       ((header_t){ MHD_HTTP_HEADER_ALLOW, (v) })

typedef enum { ROUTE_ONE, ROUTE_BATCH } route_t;
typedef enum { ST_RECEIVING, ST_WAITING } state_t;

struct req_s;

typedef struct {
        struct req_s *req;
        int64_t lineno;
        char command_id[ORDO_MSG_ID_MAX + 1];
        char order_id[ORDO_ID_MAX + 1]; /* PlaceOrder only */
        char user_id[ORDO_ID_MAX + 1];  /* PlaceOrder only: rate limit */
        ordo_msg_type_t type;
        ordo_topic_t topic;
        size_t off, len, key_off, key_len; /* in req->arena */
        int64_t t0_us;
        int taken;               /* limits it took a token from (BY_*) */
        rd_kafka_resp_err_t err; /* set by the delivery report */
        int maybe_written;       /* failed, but sent: may be in the log */
} line_t;

typedef struct req_s {
        ordo_ingest_t *gw;
        struct MHD_Connection *conn;
        char path[PATH_MAX_SEEN + 1]; /* as sent, before percent-decoding */
        char peer[INET6_ADDRSTRLEN];
        int started;  /* the headers were seen */
        int answered; /* a response was queued */
        int timed_out;
        unsigned status; /* of the answer after a wait for Kafka */
        route_t route;
        state_t state;
        ordo_keyset_t *keys; /* the set the key was found in, held */
        const ordo_key_t *key;
        int64_t deadline_ms; /* for the whole body */
        size_t held;         /* bytes counted in gw->unauth for peer */
        char *body;
        size_t len, cap;
        /* An answer decided before the body was read: it is sent once
         * the body has been read and dropped (refuse_unread). */
        struct {
                unsigned status; /* 0: none */
                const char *field, *reason;
                char msg[160];
                header_t extra;
        } refusal;
        line_t *lines;
        size_t n_lines;
        char *arena;
        size_t arena_len, arena_cap;
        atomic_long pending; /* delivery reports still due, + 1 guard */
} req_t;

static int64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The body is authenticated (or the request is over): its bytes leave
 * the budget of unauthenticated bytes. */
static void release_held(req_t *r) {
        ordo_budget_give(r->gw->unauth, r->peer, (int64_t)r->held);
        r->held = 0;
}

/* Room for n more unauthenticated bytes from r's peer; if there is none,
 * the text of the 503 BUSY that says which limit is full. */
static const char *hold(req_t *r, int64_t n) {
        switch (ordo_budget_take(r->gw->unauth, r->peer, n)) {
        case ORDO_BUDGET_OK:
                r->held += (size_t)n;
                return NULL;
        case ORDO_BUDGET_KEY:
                return "too many unauthenticated bytes held from your "
                       "address (ingest.unauth.peer.bytes.max); retry";
        case ORDO_BUDGET_TABLE:
                return "too many addresses hold unauthenticated bytes at "
                       "once (ingest.rate.users.max); retry";
        default:
                return "too many unauthenticated bytes held "
                       "(ingest.unauth.bytes.max); retry";
        }
}

static void req_free(req_t *r) {
        if (!r)
                return;
        release_held(r);
        ordo_keyset_release(r->keys);
        free(r->body);
        free(r->lines);
        free(r->arena);
        free(r);
}

/* ---- answers ------------------------------------------------------------ */

static void count_status(ordo_ingest_t *gw, unsigned status) {
        size_t i;
        for (i = 0; i < N_STATUSES && statuses[i] != status; i++)
                ;
        atomic_fetch_add(&gw->metrics.requests[i], 1);
}

/* Sends text (taken: freed with free()) with status and content type. */
static enum MHD_Result send_text(ordo_ingest_t *gw, req_t *r, unsigned status,
                                 char *text, const char *content_type,
                                 header_t extra) {
        struct MHD_Connection *c = r->conn;
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (!text)
                return MHD_NO; /* out of memory: MHD drops the connection */
        resp = MHD_create_response_from_buffer(strlen(text), text,
                                               MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                content_type);
        if (extra.name)
                MHD_add_response_header(resp, extra.name, extra.value);
        if (status == MHD_HTTP_UNAUTHORIZED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                        "Ordo-HMAC-SHA256");
        ret = MHD_queue_response(c, status, resp);
        MHD_destroy_response(resp);
        /* Not queued (libmicrohttpd 0.9.75 takes an answer only on the
         * headers or after the whole body, not in the middle of it): the
         * connection closes unanswered, and on_completed counts it so. */
        if (ret != MHD_YES)
                return ret;
        /* The answer to a request that waited for Kafka is counted once
         * it is sent: its client may have gone (on_completed). */
        if (r->state == ST_WAITING)
                r->status = status;
        else
                count_status(gw, status);
        r->answered = 1;
        return ret;
}

/* Sends body (taken) as JSON. */
static enum MHD_Result send_json(ordo_ingest_t *gw, req_t *r, unsigned status,
                                 json_t *body, header_t extra) {
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        return send_text(gw, r, status, text, "application/json", extra);
}

/* Copies an untrusted header into a log-safe token: printable ASCII but
 * space, quote and backslash, at most ORDO_ID_MAX bytes, "-" if absent. */
static void log_token(const char *s, char *out, size_t size) {
        size_t i = 0;
        if (!s || !*s)
                s = "-";
        for (; *s && i + 1 < size && i < ORDO_ID_MAX; s++)
                out[i++] =
                    *s > ' ' && *s < 127 && *s != '"' && *s != '\\' ? *s : '?';
        out[i] = '\0';
}

/* One info line per refused request (issue 13): status, reason, key id
 * and peer. Rate limited so a flood of bad requests cannot fill the disk;
 * the next line logged says how many were left out. */
static void log_refused(ordo_ingest_t *gw, req_t *r, const char *status,
                        const char *reason) {
        char key[ORDO_ID_MAX + 1];
        uint_fast64_t skipped;

        if (ORDO_LOG_INFO > ordo__log_level)
                return;
        if (!ordo_ratelimit_take(gw->rl_log, "log", ordo_wall_ms())) {
                atomic_fetch_add(&gw->log_skipped, 1);
                return;
        }
        skipped = atomic_exchange(&gw->log_skipped, 0);
        log_token(r->key ? r->key->id
                         : MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
                                                       "X-Ordo-Key"),
                  key, sizeof(key));
        ORDO_LOG(INFO, "ingest",
                 "msg=refused status=%s reason=%s key=%s peer=%s "
                 "not_logged=%" PRIuFAST64,
                 status, reason, key, r->peer, skipped);
}

/* {"error": msg, "field": field, "reason": reason}, logged as a
 * refusal; field (a header at fault) may be NULL. */
static enum MHD_Result send_error(ordo_ingest_t *gw, req_t *r, unsigned status,
                                  const char *field, const char *reason,
                                  const char *msg, header_t extra) {
        char st[16];
        snprintf(st, sizeof(st), "%u", status);
        log_refused(gw, r, st, reason);
        return send_json(gw, r, status,
                         json_pack("{s:s, s:s*, s:s}", "error", msg, "field",
                                   field, "reason", reason),
                         extra);
}

/* An answer decided before the body is read, sent once it has been read
 * and dropped (send_refusal). */
static void refuse_later(req_t *r, unsigned status, const char *field,
                         const char *reason, const char *msg, header_t extra) {
        r->refusal.status = status;
        r->refusal.field = field;
        r->refusal.reason = reason;
        snprintf(r->refusal.msg, sizeof(r->refusal.msg), "%s", msg);
        r->refusal.extra = extra;
}

static enum MHD_Result send_refusal(ordo_ingest_t *gw, req_t *r) {
        return send_error(gw, r, r->refusal.status, r->refusal.field,
                          r->refusal.reason, r->refusal.msg, r->refusal.extra);
}

/* ---- Kafka -------------------------------------------------------------- */

static void *poll_loop(void *arg) {
        ordo_ingest_t *gw = arg;
        while (!atomic_load(&gw->stop_poller))
                rd_kafka_poll(gw->rk, 100);
        return NULL;
}

/* Whether Kafka has the command topics. One it has not (a wrong
 * topic.prefix, `ordo topics` never run) would otherwise look like an
 * outage: every command times out in the producer ("Message timed out")
 * while /healthz says ok. Unchanged while Kafka does not answer. */
static void check_topics(ordo_ingest_t *gw) {
        static const ordo_topic_t commands[] = { ORDO_TOPIC_ACTIVITY_COMMANDS,
                                                 ORDO_TOPIC_ORDER_COMMANDS,
                                                 ORDO_TOPIC_REFERRAL_COMMANDS };
        int missing = 0, was;
        size_t i;

        for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                int there =
                    ordo_kafka_topic_exists(gw->rk, gw->topics[commands[i]]);
                if (there < 0)
                        return;
                if (!there)
                        missing |= 1 << commands[i];
        }
        was = atomic_exchange(&gw->missing, missing);
        for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
                int bit = 1 << commands[i];
                if ((missing & bit) && !(was & bit))
                        ORDO_LOG(ERROR, "ingest",
                                 "msg=\"" ORDO_NO_TOPIC_FMT "\"",
                                 gw->topics[commands[i]]);
                else if (!(missing & bit) && (was & bit))
                        ORDO_LOG(INFO, "ingest",
                                 "msg=\"topic %s is there now\"",
                                 gw->topics[commands[i]]);
        }
}

/* Why topic t cannot take commands, if Kafka has no such topic; "". */
static void missing_topic(ordo_ingest_t *gw, ordo_topic_t t, char *buf,
                          size_t size) {
        buf[0] = '\0';
        if (atomic_load(&gw->missing) & (1 << t))
                snprintf(buf, size, ORDO_NO_TOPIC_FMT, gw->topics[t]);
}

#define TOPIC_CHECK_MS  5000
#define KAFKA_CHECK_MS  1000
#define KAFKA_ANSWER_MS 1000

/* Whether Kafka answers metadata within KAFKA_ANSWER_MS, for /healthz.
 * Asked here rather than on the request: an HTTP thread waiting for
 * Kafka would hold every connection it serves, and /healthz needs no
 * key. */
static void check_kafka(ordo_ingest_t *gw) {
        const struct rd_kafka_metadata *md;
        rd_kafka_resp_err_t err =
            rd_kafka_metadata(gw->rk, 0, NULL, &md, KAFKA_ANSWER_MS);
        if (!err) {
                atomic_store(&gw->brokers, md->broker_cnt);
                rd_kafka_metadata_destroy(md);
        }
        atomic_store(&gw->brokers_err, (int)err);
}

static void *watch_topics(void *arg) {
        ordo_ingest_t *gw = arg;
        int64_t next_topics = 0, next_kafka = 0;
        while (!atomic_load(&gw->stop_poller)) {
                if (ordo_monotonic_ms() >= next_kafka) {
                        check_kafka(gw);
                        next_kafka = ordo_monotonic_ms() + KAFKA_CHECK_MS;
                }
                if (ordo_monotonic_ms() >= next_topics) {
                        check_topics(gw);
                        next_topics = ordo_monotonic_ms() + TOPIC_CHECK_MS;
                }
                usleep(100 * 1000);
        }
        return NULL;
}

/* One line is done; the last one of a request resumes its connection. */
static void line_done(line_t *l) {
        req_t *r = l->req;
        if (atomic_fetch_sub(&r->pending, 1) == 1) {
                atomic_fetch_sub(&r->gw->inflight, 1);
                MHD_resume_connection(r->conn);
        }
}

static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque) {
        ordo_ingest_t *gw = opaque;
        line_t *l = m->_private;
        int64_t us = now_us() - l->t0_us;
        size_t b;
        (void)rk;

        l->err = ordo_kafka_delivery_err(m); /* an offset, or not sent */
        l->maybe_written = ordo_kafka_maybe_written(m);
        if (l->err) {
                atomic_fetch_add(&gw->metrics.failed, 1);
        } else {
                atomic_fetch_add(&gw->metrics.acked, 1);
                for (b = 0; b < N_BUCKETS && us > bucket_us[b]; b++)
                        ;
                atomic_fetch_add(&gw->metrics.latency[b], 1);
                atomic_fetch_add(&gw->metrics.latency_sum_us,
                                 (uint_fast64_t)(us > 0 ? us : 0));
        }
        line_done(l);
}

static void codec_free(void *c) {
        ordo_codec_destroy(c);
}

/* The codec is not thread-safe (codec.h): one per MHD thread, freed when
 * the thread ends. */
static ordo_codec_t *thread_codec(ordo_ingest_t *gw) {
        ordo_codec_t *c = pthread_getspecific(gw->codec_key);
        char errstr[256];
        if (!c) {
                c = ordo_codec_new(errstr, sizeof(errstr));
                if (!c)
                        ORDO_LOG(ERROR, "ingest", "msg=\"codec: %s\"", errstr);
                else
                        pthread_setspecific(gw->codec_key, c);
        }
        return c;
}

/* ---- auth --------------------------------------------------------------- */

/* On the headers, before the body: the key (held in r) and the time.
 * NULL if the request may go on reading its body; otherwise the reason of
 * the 401 and *msg. */
static const char *door_auth(ordo_ingest_t *gw, req_t *r, const char **msg) {
        struct MHD_Connection *c = r->conn;
        const char *id, *ts, *sig;
        int64_t t, now = ordo_wall_ms();
        char *end;

        pthread_mutex_lock(&gw->keys_lock);
        r->keys = ordo_keyset_ref(gw->keys);
        pthread_mutex_unlock(&gw->keys_lock);
        if (!r->keys)
                return NULL; /* authentication off */
        id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ordo-Key");
        ts =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ordo-Timestamp");
        sig =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ordo-Signature");
        if (!id || !ts || !sig) {
                *msg = "X-Ordo-Key, X-Ordo-Timestamp and X-Ordo-Signature "
                       "are required";
                return "MISSING_AUTH";
        }
        errno = 0;
        t = strtoll(ts, &end, 10);
        if (!*ts || *end || errno || t < now - gw->window_ms ||
            t > now + gw->window_ms) {
                *msg = "X-Ordo-Timestamp is not milliseconds since the epoch "
                       "within the signature window of the gateway's clock";
                return "STALE_TIMESTAMP";
        }
        /* Key ids travel in clear and are no secret: saying which one is
         * unknown costs nothing and spares reading a body. */
        if (!(r->key = ordo_keyset_find(r->keys, id))) {
                *msg = "X-Ordo-Key is not a key of this gateway";
                return "UNKNOWN_KEY";
        }
        return NULL;
}

/* The whole body is in: the signature over the path as sent, then the
 * replay set. NULL if the request may pass; otherwise the reason of the
 * 401 and *msg. */
static const char *auth(ordo_ingest_t *gw, req_t *r, const char *method,
                        const char **msg) {
        struct MHD_Connection *c = r->conn;
        const char *ts, *sig;
        unsigned char digest[ORDO_HMAC_SHA256_LEN];
        int64_t now = ordo_wall_ms(), remember_until;

        if (!r->key)
                return NULL; /* authentication off: door_auth said so */
        ts =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ordo-Timestamp");
        sig =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Ordo-Signature");
        if (ordo_ingest_sign(r->key->secret, method, r->path, ts, r->body,
                             r->len, digest, NULL) ||
            !ordo_hmac_hex_equal(digest, sig)) {
                *msg = "X-Ordo-Signature does not match: hex HMAC-SHA256 of "
                       "method, path as sent, timestamp and body, each but "
                       "the last followed by \\n";
                return "BAD_SIGNATURE";
        }
        /* A copy may pass the door up to the window's end and send its
         * body for ingest.body.timeout.ms more: the signature is
         * remembered until then, and is stale past it (its memory may be
         * gone). */
        remember_until =
            strtoll(ts, NULL, 10) + gw->window_ms + gw->body_timeout_ms;
        if (now >= remember_until) {
                *msg = "X-Ordo-Timestamp is past the signature window and "
                       "ingest.body.timeout.ms";
                return "STALE_TIMESTAMP";
        }
        if (ordo_seen_check_add(gw->seen, digest, remember_until, now)) {
                *msg = "this signature was used before: sign each request, "
                       "retries included, with a new timestamp";
                return "REPLAYED";
        }
        return NULL;
}

/* ---- prepare: validate, stamp, identify, encode ------------------------- */

typedef struct {
        json_t *errors; /* array of {line, error, field, reason} */
        size_t n;
        int too_large; /* a command over ORDO_COMMAND_MAX_BYTES */
        int forbidden; /* a type outside the key's scope: 403 */
} faults_t;

static void add_fault(faults_t *f, int64_t lineno, const char *error,
                      const char *field, const char *reason) {
        f->n++;
        if (!strcmp(reason, "TOO_LARGE"))
                f->too_large = 1;
        if (!strcmp(reason, "FORBIDDEN_TYPE"))
                f->forbidden = 1;
        if (json_array_size(f->errors) < ERRORS_LISTED)
                json_array_append_new(
                    f->errors, json_pack("{s:I, s:s, s:s, s:s}", "line",
                                         (json_int_t)lineno, "error", error,
                                         "field", field, "reason", reason));
}

static int arena_reserve(req_t *r, size_t n) {
        if (r->arena_len + n > r->arena_cap) {
                size_t cap = r->arena_cap ? r->arena_cap : 4096;
                char *a;
                while (cap < r->arena_len + n)
                        cap *= 2;
                if (!(a = realloc(r->arena, cap)))
                        return -1;
                r->arena = a;
                r->arena_cap = cap;
        }
        return 0;
}

/* Validates one command into l; on a fault records it and returns -1. */
static int prepare_line(ordo_ingest_t *gw, req_t *r, ordo_codec_t *codec,
                        const ordo_validate_opts_t *opts, const char *s,
                        size_t n, line_t *l, faults_t *f) {
        ordo_msg_t m;
        ordo_field_fault_t fault;
        char errstr[512];
        const char *key;
        size_t len;
        int64_t now = ordo_wall_ms();

        if (ordo_admit(&gw->door, s, n, opts, now, &m, &fault, errstr,
                       sizeof(errstr))) {
                add_fault(f, l->lineno, errstr, fault.field,
                          fault.reason[0] ? fault.reason : "INVALID");
                return -1;
        }
        if (m.type == ORDO_MSG_TICK) {
                /* A Tick must reach every partition; `ordo tick` does
                 * that, one HTTP command cannot. */
                add_fault(f, l->lineno,
                          "field \"type\": Tick is sent by `ordo tick`, not "
                          "through the gateway",
                          "type", "INTERNAL_TYPE");
                return -1;
        }
        if (m.type == ORDO_MSG_PLACE_ORDER) {
                ordo_strlcpy(l->order_id, m.u.place.order_id,
                             sizeof(l->order_id));
                ordo_strlcpy(l->user_id, m.u.place.user_id, sizeof(l->user_id));
        }
        ordo_strlcpy(l->command_id, m.meta.id, sizeof(l->command_id));
        l->type = m.type;
        l->topic = ordo_command_topic(m.type);
        key = ordo_msg_key(&m);
        l->key_len = strlen(key);
        if (arena_reserve(r, ENCODED_MAX + l->key_len)) {
                add_fault(f, l->lineno, "out of memory", "", "INTERNAL");
                return -1;
        }
        if (ordo_codec_encode(codec, &m, r->arena + r->arena_len, ENCODED_MAX,
                              &len, errstr, sizeof(errstr))) {
                add_fault(f, l->lineno, errstr, "", "NOT_ENCODABLE");
                return -1;
        }
        l->off = r->arena_len;
        l->len = len;
        r->arena_len += len;
        l->key_off = r->arena_len;
        memcpy(r->arena + r->arena_len, key, l->key_len);
        r->arena_len += l->key_len;
        return 0;
}

/* 0 if the key may send the line's type; else records the 403 fault. */
static int in_scope(const ordo_key_t *key, const line_t *l, faults_t *f) {
        char scopes[256], msg[512];

        if (!key || ordo_key_allows(key, l->type))
                return 0;
        snprintf(msg, sizeof(msg),
                 "field \"type\": key %s may not send %s (its scope: %s)",
                 key->id, ordo_msg_type_name(l->type),
                 ordo_key_scopes_str(key, scopes, sizeof(scopes)));
        add_fault(f, l->lineno, msg, "type", "FORBIDDEN_TYPE");
        return -1;
}

/* Splits the body into lines (one for /v1/commands) and prepares each.
 * Returns the number of faults; f->errors lists them. */
static size_t prepare(ordo_ingest_t *gw, req_t *r, const ordo_key_t *key,
                      faults_t *f) {
        /* a Tick's "partition" (a replay line) is taken so that the Tick
         * is refused for what it is, INTERNAL_TYPE (prepare_line) */
        ordo_validate_opts_t opts = { .keep_ts = key && key->trusted,
                                      .allow_internal = 0,
                                      .generate_order_id = 1,
                                      .tick_partition = 1 };
        ordo_codec_t *codec = thread_codec(gw);
        size_t cap = 1, i, pos = 0;
        int64_t lineno = 0;

        if (!codec) {
                add_fault(f, 1, "the gateway has no codec", "", "INTERNAL");
                return f->n;
        }
        if (r->route == ROUTE_BATCH) {
                /* one entry per line that is not blank: a body of blank
                 * lines must not cost an entry (330 bytes) per byte */
                int blank = 1;
                for (i = 0; i < r->len; i++) {
                        char ch = r->body[i];
                        if (ch == '\n') {
                                cap += !blank;
                                blank = 1;
                        } else if (ch != ' ' && ch != '\t' && ch != '\r')
                                blank = 0;
                }
        }
        if (!(r->lines = calloc(cap, sizeof(*r->lines)))) {
                add_fault(f, 1, "out of memory", "", "INTERNAL");
                return f->n;
        }
        if (r->route == ROUTE_ONE) {
                line_t *l = &r->lines[r->n_lines++];
                size_t n = r->len;
                /* its line ending is not the command's, as for a line
                 * of a batch or of `ordo produce` (the 64 KiB cap) */
                if (n && r->body[n - 1] == '\n')
                        n--;
                if (n && r->body[n - 1] == '\r')
                        n--;
                l->req = r;
                l->lineno = 1;
                if (!prepare_line(gw, r, codec, &opts, r->body, n, l, f))
                        in_scope(key, l, f);
                return f->n;
        }
        while (pos < r->len) {
                const char *s = r->body + pos, *nl;
                size_t n = r->len - pos, k;
                line_t *l;

                nl = memchr(s, '\n', n);
                if (nl)
                        n = (size_t)(nl - s);
                pos += n + 1;
                lineno++;
                k = n;
                if (k && s[k - 1] == '\r') /* "\r\n": its ending */
                        k--;
                if (ordo_json_blank(s, k))
                        continue; /* blank lines are skipped */
                l = &r->lines[r->n_lines++];
                l->req = r;
                l->lineno = lineno;
                if (prepare_line(gw, r, codec, &opts, s, k, l, f) ||
                    in_scope(key, l, f))
                        r->n_lines--;
        }
        if (!r->n_lines && !f->n)
                add_fault(f, 1, "empty batch: no command in the body", "",
                          "EMPTY");
        return f->n;
}

static enum MHD_Result refuse(ordo_ingest_t *gw, req_t *r, faults_t *f) {
        json_t *first = json_array_get(f->errors, 0), *body, *e;
        size_t i;
        /* 413 for a command over 64 KiB, in a batch too (the contract's
         * TOO_LARGE) */
        unsigned status = f->forbidden   ? MHD_HTTP_FORBIDDEN
                          : f->too_large ? MHD_HTTP_CONTENT_TOO_LARGE
                                         : MHD_HTTP_BAD_REQUEST;
        const char *lead = f->forbidden   ? "FORBIDDEN_TYPE"
                           : f->too_large ? "TOO_LARGE"
                                          : NULL;
        char st[16];

        /* A 403 or a 413 leads with its first line of that reason, so
         * that the reason at the top is the status's. */
        json_array_foreach(f->errors, i, e) {
                if (lead &&
                    !strcmp(json_string_value(json_object_get(e, "reason")),
                            lead)) {
                        first = e;
                        break;
                }
        }
        snprintf(st, sizeof(st), "%u", status);
        log_refused(gw, r, st,
                    json_string_value(json_object_get(first, "reason")));

        if (r->route == ROUTE_ONE) {
                body = json_deep_copy(first);
                json_object_del(body, "line");
        } else {
                /* The first fault at the top, as for one command; then
                 * every refused line. */
                body = json_deep_copy(first);
                json_object_set_new(
                    body, "error",
                    json_sprintf(
                        "%zu line(s) refused, nothing sent; first: "
                        "line %" JSON_INTEGER_FORMAT ": %s",
                        f->n,
                        json_integer_value(json_object_get(first, "line")),
                        json_string_value(json_object_get(first, "error"))));
                json_object_set_new(body, "refused",
                                    json_integer((json_int_t)f->n));
                json_object_set(body, "errors", f->errors);
        }
        return send_json(gw, r, status, body, NO_HEADER);
}

/* ---- limit -------------------------------------------------------------- */

enum { BY_KEY = 1, BY_PEER = 2, BY_USER = 4 };

/* Takes one token for line l from each limit that applies; returns the
 * limits that refused (BY_*), and the ones taken in l->taken. */
static int take_line(ordo_ingest_t *gw, req_t *r, line_t *l, int64_t now) {
        int refused = 0;

        l->taken = 0;
        if (r->key) {
                if (ordo_ratelimit_take(gw->rl_key, r->key->id, now))
                        l->taken |= BY_KEY;
                else
                        refused |= BY_KEY;
        }
        if (ordo_ratelimit_take(gw->rl_peer, r->peer, now))
                l->taken |= BY_PEER;
        else
                refused |= BY_PEER;
        if (l->user_id[0]) {
                if (ordo_ratelimit_take(gw->rl, l->user_id, now))
                        l->taken |= BY_USER;
                else
                        refused |= BY_USER;
        }
        return refused;
}

/* One bucket a refused batch draws on: how many tokens it needs at once,
 * and the wait until the bucket holds them (INT64_MAX: never, over its
 * burst). The worst is kept in *worst. */
typedef struct {
        const char *field, *burst_key; /* as the answer names them */
        int64_t burst, wait;
        size_t need;
} need_t;

static void need(need_t *worst, const char *field, const char *burst_key,
                 ordo_ratelimit_t *rl, const char *key, size_t n, int64_t now) {
        int64_t wait = ordo_ratelimit_wait(rl, key, now, (int64_t)n);
        if (wait > worst->wait) {
                worst->field = field;
                worst->burst_key = burst_key;
                worst->burst = ordo_ratelimit_burst(rl);
                worst->wait = wait;
                worst->need = n;
        }
}

static int by_user_id(const void *a, const void *b) {
        return strcmp((*(const line_t *const *)a)->user_id,
                      (*(const line_t *const *)b)->user_id);
}

/* What a refused request needs of each bucket it draws on (the key's,
 * the peer's, each user_id's), at once: a batch waits for all of its
 * tokens, not for the first. */
static need_t needs(ordo_ingest_t *gw, req_t *r, int64_t now) {
        const line_t **by_user = calloc(r->n_lines, sizeof(*by_user));
        need_t worst = { NULL, NULL, 0, 0, 0 };
        size_t i, j, n = 0;

        if (r->key)
                need(&worst, "X-Ordo-Key", "ingest.rate.key.burst", gw->rl_key,
                     r->key->id, r->n_lines, now);
        need(&worst, "peer", "ingest.rate.peer.burst", gw->rl_peer, r->peer,
             r->n_lines, now);
        for (i = 0; by_user && i < r->n_lines; i++)
                if (r->lines[i].user_id[0])
                        by_user[n++] = &r->lines[i];
        if (n)
                qsort(by_user, n, sizeof(*by_user), by_user_id);
        for (i = 0; i < n; i = j) {
                for (j = i + 1; j < n && !by_user_id(&by_user[i], &by_user[j]);
                     j++)
                        ;
                need(&worst, "user_id", "ingest.rate.burst", gw->rl,
                     by_user[i]->user_id, j - i, now);
        }
        free(by_user);
        return worst;
}

/* A batch that needs more tokens of one bucket than it ever holds (its
 * burst) would be refused 429 for ever: 400 OVER_BURST, naming the
 * limit. */
static enum MHD_Result over_burst(ordo_ingest_t *gw, req_t *r,
                                  const need_t *w) {
        char text[256];
        snprintf(text, sizeof(text),
                 "the batch needs %zu commands of one %s at once, more than "
                 "its limit ever allows (%s = %lld); split it; nothing sent",
                 w->need, w->field, w->burst_key, (long long)w->burst);
        log_refused(gw, r, "400", "OVER_BURST");
        return send_json(gw, r, MHD_HTTP_BAD_REQUEST,
                         json_pack("{s:s, s:s, s:s}", "error", text, "field",
                                   w->field, "reason", "OVER_BURST"),
                         NO_HEADER);
}

/* 0 if every line may pass the limits per key, per peer and (PlaceOrder)
 * per user_id; else sends 429 (400 if it never could) and returns -1.
 * Every token is taken under one lock and, if any line is refused, every
 * token given back: a refused request spends nothing. */
static int limit(ordo_ingest_t *gw, req_t *r, enum MHD_Result *ret) {
        need_t w;
        json_t *lines, *body;
        int64_t now = ordo_wall_ms();
        size_t i, refused = 0;
        int first = 0;
        char after[32];
        const char *field, *what;

        /* A trusted batch key replays history; the brakes are for bots. */
        if (r->key && r->key->trusted)
                return 0;
        pthread_mutex_lock(&gw->limit_lock);
        for (i = 0; i < r->n_lines; i++) {
                int b = take_line(gw, r, &r->lines[i], now);
                if (b && !refused++)
                        first = b;
        }
        for (i = 0; refused && i < r->n_lines; i++) {
                line_t *l = &r->lines[i];
                if (l->taken & BY_KEY)
                        ordo_ratelimit_give(gw->rl_key, r->key->id, now);
                if (l->taken & BY_PEER)
                        ordo_ratelimit_give(gw->rl_peer, r->peer, now);
                if (l->taken & BY_USER)
                        ordo_ratelimit_give(gw->rl, l->user_id, now);
        }
        pthread_mutex_unlock(&gw->limit_lock);
        if (!refused)
                return 0;
        /* The wait for every token the request needs, once all are given
         * back: it covers each refused line's wait for its own. */
        w = needs(gw, r, now);
        if (w.wait == INT64_MAX) {
                *ret = over_burst(gw, r, &w);
                return -1;
        }
        /* Name the first line's limit: key, then peer, then user. */
        if (first & BY_KEY) {
                field = "X-Ordo-Key";
                what = "too many commands for this key (ingest.rate.per.key)";
        } else if (first & BY_PEER) {
                field = "peer";
                what = "too many commands from this address "
                       "(ingest.rate.per.peer)";
        } else {
                field = "user_id";
                what = "too many PlaceOrder for this user_id "
                       "(ingest.rate.per.user)";
        }
        snprintf(after, sizeof(after), "%lld",
                 (long long)((w.wait + 999) / 1000));
        body = json_pack("{s:s+, s:s, s:s, s:I}", "error", what,
                         "; nothing sent", "field", field, "reason",
                         "RATE_LIMITED", "retry_after_ms", (json_int_t)w.wait);
        if (r->route == ROUTE_BATCH) {
                lines = json_array();
                for (i = 0; i < r->n_lines; i++) {
                        line_t *l = &r->lines[i];
                        int want = (r->key ? BY_KEY : 0) | BY_PEER |
                                   (l->user_id[0] ? BY_USER : 0);
                        if (l->taken != want &&
                            json_array_size(lines) < ERRORS_LISTED)
                                json_array_append_new(
                                    lines, json_integer((json_int_t)l->lineno));
                }
                json_object_set_new(body, "lines", lines);
        }
        log_refused(gw, r, "429", "RATE_LIMITED");
        *ret = send_json(gw, r, MHD_HTTP_TOO_MANY_REQUESTS, body,
                         RETRY_AFTER(after));
        return -1;
}

/* ---- produce and answer ------------------------------------------------- */

/* Hands every line to librdkafka. Returns how many were taken; the lines
 * not taken carry the error. */
static size_t produce(ordo_ingest_t *gw, req_t *r) {
        size_t i, taken = 0;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        ordo_kafka_out_t out = { .partition = RD_KAFKA_PARTITION_UA };

        for (i = 0; i < r->n_lines; i++) {
                line_t *l = &r->lines[i];
                if (err) {
                        l->err = err; /* not sent: the queue is full */
                        continue;
                }
                if (atomic_load(&gw->missing) & (1 << l->topic)) {
                        /* Kafka has no such topic (check_topics): a 503
                         * naming it now, not after the message timeout */
                        l->err = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
                        continue;
                }
                l->t0_us = now_us();
                atomic_fetch_add(&r->pending, 1);
                /* No copy: the arena lives until the request is freed,
                 * after its last delivery report. */
                out.topic = gw->topics[l->topic];
                out.key = l->key_len ? r->arena + l->key_off : NULL;
                out.key_len = l->key_len;
                out.value = r->arena + l->off;
                out.len = l->len;
                out.hdrs = rd_kafka_headers_new(1);
                rd_kafka_header_add(out.hdrs, ORDO_TYPE_HEADER, -1,
                                    ordo_msg_type_name(l->type), -1);
                out.opaque = l;
                /* A full queue is refused at once, not waited for: the
                 * client gets 503 and resends (DESIGN.md). */
                err = ordo_kafka_produce(gw->rk, &out, 0, 0);
                if (err) {
                        atomic_fetch_sub(&r->pending, 1);
                        l->err = err;
                } else
                        taken++;
        }
        /* the lines Kafka never got count as failed, as in a report */
        atomic_fetch_add(&gw->metrics.failed, r->n_lines - taken);
        return taken;
}

static json_t *line_result(const line_t *l, int with_status) {
        json_t *o = json_pack("{s:I, s:s}", "line", (json_int_t)l->lineno,
                              "command_id", l->command_id);
        if (l->order_id[0])
                json_object_set_new(o, "order_id", json_string(l->order_id));
        if (with_status) {
                json_object_set_new(
                    o, "status", json_string(l->err ? "failed" : "accepted"));
                if (l->err)
                        json_object_set_new(
                            o, "error", json_string(rd_kafka_err2str(l->err)));
        }
        return o;
}

static enum MHD_Result answer(ordo_ingest_t *gw, req_t *r) {
        char why[400] = "";
        size_t i, failed = 0, maybe = 0;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        json_t *body, *results;

        for (i = 0; i < r->n_lines; i++)
                if (r->lines[i].err) {
                        maybe += r->lines[i].maybe_written;
                        if (failed++)
                                continue;
                        err = r->lines[i].err;
                        missing_topic(gw, r->lines[i].topic, why, sizeof(why));
                }
        if (r->route == ROUTE_ONE) {
                body = line_result(&r->lines[0], 0);
                json_object_del(body, "line");
        } else {
                results = json_array();
                for (i = 0; i < r->n_lines; i++)
                        json_array_append_new(
                            results, line_result(&r->lines[i], failed));
                body = json_pack("{s:I, s:o}", "accepted",
                                 (json_int_t)(r->n_lines - failed), "results",
                                 results);
        }
        if (!failed)
                return send_json(gw, r, MHD_HTTP_ACCEPTED, body, NO_HEADER);
        json_object_set_new(
            body, "error",
            json_sprintf("Kafka did not confirm %zu of %zu command(s): "
                         "%s%s%s%s; %sresend them with the same ids",
                         failed, r->n_lines, rd_kafka_err2str(err),
                         why[0] ? " (" : "", why, why[0] ? ")" : "",
                         /* sent, not confirmed: written or not? */
                         maybe ? "sent but not confirmed, they may be in "
                                 "the log: "
                               : ""));
        json_object_set_new(body, "reason", json_string("UNAVAILABLE"));
        /* (a full queue, a missing topic: said once elsewhere, not per
         * request) */
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL && !why[0])
                ORDO_LOG(WARN, "ingest",
                         "msg=\"not acknowledged\" commands=%zu err=\"%s\"",
                         failed, rd_kafka_err2str(err));
        return send_json(gw, r, MHD_HTTP_SERVICE_UNAVAILABLE, body,
                         RETRY_AFTER(UNAVAILABLE_S));
}

/* The whole body is in: auth, prepare, limit, produce, suspend. */
static enum MHD_Result process(ordo_ingest_t *gw, req_t *r,
                               const char *method) {
        const char *reason, *msg = "";
        faults_t f = { json_array(), 0, 0, 0 };
        enum MHD_Result ret;

        if (r->refusal.status) {
                json_decref(f.errors);
                return send_refusal(gw, r);
        }
        /* The body is complete: the connection is idle until the next
         * request, under the ordinary idle timeout. */
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  IDLE_TIMEOUT_S);
        if ((reason = auth(gw, r, method, &msg))) {
                json_decref(f.errors);
                return send_error(gw, r, MHD_HTTP_UNAUTHORIZED, NULL, reason,
                                  msg, NO_HEADER);
        }
        release_held(r);
        if (prepare(gw, r, r->key, &f)) {
                ret = refuse(gw, r, &f);
                json_decref(f.errors);
                return ret;
        }
        json_decref(f.errors);
        if (limit(gw, r, &ret))
                return ret;

        /* Counted before the check, so shutdown waits for us if we pass. */
        atomic_fetch_add(&gw->inflight, 1);
        if (atomic_load(&gw->stopping)) {
                atomic_fetch_sub(&gw->inflight, 1);
                return send_error(gw, r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL,
                                  "UNAVAILABLE", "the gateway is stopping",
                                  RETRY_AFTER(UNAVAILABLE_S));
        }
        atomic_store(&r->pending, 1); /* the guard */
        if (!produce(gw, r)) {
                atomic_fetch_sub(&gw->inflight, 1);
                return answer(gw, r); /* nothing queued: 503 now */
        }
        r->state = ST_WAITING;
        atomic_fetch_add(&gw->waiting, 1);
        MHD_suspend_connection(r->conn);
        /* Drop the guard: if every report came already, resume now. */
        if (atomic_fetch_sub(&r->pending, 1) == 1) {
                atomic_fetch_sub(&gw->inflight, 1);
                MHD_resume_connection(r->conn);
        }
        return MHD_YES;
}

/* ---- GET endpoints ------------------------------------------------------ */

/* The gateway's health, from the watcher's last look (check_kafka),
 * never waiting for Kafka: 503 with the reason while Kafka does not
 * answer or a topic is missing (a fatal producer error: restart it). */
static json_t *health(ordo_ingest_t *gw, unsigned *status) {
        int brokers = atomic_load(&gw->brokers);
        rd_kafka_resp_err_t err = atomic_load(&gw->brokers_err);
        char why[400] = "";
        int t;

        /* a fatal producer error: nothing can be sent again; restart */
        if (!rd_kafka_fatal_error(gw->rk, why, sizeof(why)) && err)
                snprintf(why, sizeof(why), "%s", rd_kafka_err2str(err));
        for (t = 0; t < ORDO_TOPIC__COUNT && !why[0]; t++)
                missing_topic(gw, (ordo_topic_t)t, why, sizeof(why));
        if (why[0]) {
                *status = MHD_HTTP_SERVICE_UNAVAILABLE;
                return json_pack("{s:s, s:s}", "status", "unavailable", "error",
                                 why);
        }
        *status = MHD_HTTP_OK;
        return json_pack("{s:s, s:i}", "status", "ok", "brokers", brokers);
}

static enum MHD_Result healthz(ordo_ingest_t *gw, req_t *r) {
        unsigned status;
        json_t *j = health(gw, &status);
        return send_json(gw, r, status, j,
                         status == MHD_HTTP_OK ? NO_HEADER
                                               : RETRY_AFTER(UNAVAILABLE_S));
}

static void write_metrics(FILE *f, void *arg) {
        ordo_ingest_t *gw = arg;
        metrics_t *m = &gw->metrics;
        char status[16];
        const char *labels[] = { "status", status, NULL };
        const char *acked[] = { "result", "acked", NULL };
        const char *failed[] = { "result", "failed", NULL };
        double bounds[N_BUCKETS];
        uint64_t counts[N_BUCKETS + 1];
        size_t i;

        ordo_prom_family(f, "ordo_ingest_requests_total", "counter",
                         "HTTP requests answered, by status.");
        for (i = 0; i <= N_STATUSES; i++) {
                if (i < N_STATUSES)
                        snprintf(status, sizeof(status), "%u", statuses[i]);
                else
                        snprintf(status, sizeof(status), "other");
                ordo_prom_sample(f, "ordo_ingest_requests_total", labels,
                                 (double)atomic_load(&m->requests[i]));
        }
        snprintf(status, sizeof(status), "disconnected");
        ordo_prom_sample(f, "ordo_ingest_requests_total", labels,
                         (double)atomic_load(&m->disconnected));
        snprintf(status, sizeof(status), "timeout");
        ordo_prom_sample(f, "ordo_ingest_requests_total", labels,
                         (double)atomic_load(&m->timed_out));
        snprintf(status, sizeof(status), "library");
        ordo_prom_sample(f, "ordo_ingest_requests_total", labels,
                         (double)atomic_load(&m->by_library));
        ordo_prom_family(f, "ordo_ingest_commands_total", "counter",
                         "Commands Kafka acknowledged (result=\"acked\") or "
                         "did not.");
        ordo_prom_sample(f, "ordo_ingest_commands_total", acked,
                         (double)atomic_load(&m->acked));
        ordo_prom_sample(f, "ordo_ingest_commands_total", failed,
                         (double)atomic_load(&m->failed));
        ordo_prom_family(f, "ordo_ingest_produce_seconds", "histogram",
                         "From produce to Kafka's acknowledgement "
                         "(acks=all), per command.");
        for (i = 0; i <= N_BUCKETS; i++) {
                if (i < N_BUCKETS)
                        bounds[i] = (double)bucket_us[i] / 1e6;
                counts[i] = atomic_load(&m->latency[i]);
        }
        ordo_prom_histogram(f, "ordo_ingest_produce_seconds", NULL, bounds,
                            counts, N_BUCKETS,
                            (double)atomic_load(&m->latency_sum_us) / 1e6);
        ordo_prom_single(f, "ordo_ingest_queue_depth", "gauge",
                         "Messages in the producer queue, not yet "
                         "acknowledged (rd_kafka_outq_len).",
                         NULL, rd_kafka_outq_len(gw->rk));
        ordo_prom_single(f, "ordo_ingest_waiting_requests", "gauge",
                         "Requests waiting for Kafka's acknowledgement.", NULL,
                         (double)atomic_load(&gw->inflight));
        ordo_prom_single(f, "ordo_ingest_replay_evictions_total", "counter",
                         "Live signatures dropped from a full replay set "
                         "(raise ingest.replay.max).",
                         NULL, (double)ordo_seen_evictions(gw->seen));
        ordo_prom_process(f);
}

static enum MHD_Result metrics(ordo_ingest_t *gw, req_t *r) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        if (!f)
                return MHD_NO;
        write_metrics(f, gw);
        fclose(f);
        return send_text(gw, r, MHD_HTTP_OK, text, ORDO_PROM_CONTENT_TYPE,
                         NO_HEADER);
}

static unsigned health_text(void *arg, char **body, const char **type) {
        unsigned status;
        json_t *j = health(arg, &status);
        *type = "application/json";
        *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        return status;
}

ordo_metrics_source_t ordo_ingest_metrics_source(ordo_ingest_t *gw) {
        ordo_metrics_source_t src = { write_metrics, health_text, gw };
        return src;
}

/* ---- the libmicrohttpd callbacks ---------------------------------------- */

/* Counts the Content-Length and Transfer-Encoding headers (cls: int[2]). */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value) {
        int *n = cls;
        (void)kind;
        (void)value;
        n[0] += !strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH);
        n[1] += !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        return MHD_YES;
}

/* Every Content-Encoding header, each a list (RFC 9110 8.4): 1 when a
 * coding other than identity is named. libmicrohttpd's lookup gives only
 * the first header, and "identity" then "gzip" means a gzip body. */
static enum MHD_Result find_coding(void *cls, enum MHD_ValueKind kind,
                                   const char *key, const char *value) {
        int *coded = cls;
        (void)kind;
        if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_ENCODING) || !value)
                return MHD_YES;
        while (*value && !*coded) {
                size_t n;
                value += strspn(value, " \t,");
                n = strcspn(value, " \t,");
                *coded = n && !(n == 8 && !strncasecmp(value, "identity", 8));
                value += n;
        }
        return *coded ? MHD_NO : MHD_YES;
}

/* The body gets its deadline. libmicrohttpd's timeout is idle time,
 * renewed by every byte; receive() sets it again to what is left, so a
 * byte now and then cannot keep the request open. */
static void body_deadline(ordo_ingest_t *gw, req_t *r) {
        r->deadline_ms = ordo_wall_ms() + gw->body_timeout_ms;
        MHD_set_connection_option(
            r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
            (unsigned int)((gw->body_timeout_ms + 999) / 1000));
}

/* The text of the 413 for a body over ingest.body.max, into text. */
static const char *body_max_text(const ordo_ingest_t *gw, char *text,
                                 size_t size) {
        snprintf(text, size, "body over %lld bytes (ingest.body.max)",
                 (long long)gw->body_max);
        return text;
}

/* A refusal on the headers of a request whose body may be on its way. A
 * client that writes its whole body before it reads (many HTTP stacks
 * do) would find the connection reset under it, never read the answer
 * and retry a request that cannot pass; so the body is read and dropped
 * first, within its deadline (libmicrohttpd answers only on the headers
 * or after the body). Answered at once when no body is coming (none
 * announced, or Expect: 100-continue: its client waits for this answer
 * before it sends one) or one over DROP_MAX is announced. */
static enum MHD_Result refuse_unread(ordo_ingest_t *gw, req_t *r,
                                     unsigned long long length, int chunked,
                                     unsigned status, const char *field,
                                     const char *reason, const char *msg,
                                     header_t extra) {
        const char *expect = MHD_lookup_connection_value(
            r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
        if ((!length && !chunked) || length > DROP_MAX ||
            (expect && !strcasecmp(expect, "100-continue")))
                return send_error(gw, r, status, field, reason, msg, extra);
        refuse_later(r, status, field, reason, msg, extra);
        body_deadline(gw, r);
        return MHD_YES;
}

/* The first call of a request, on its headers: route, method, and the
 * door (see the top of the file). */
static enum MHD_Result door(ordo_ingest_t *gw, req_t *r, const char *url,
                            const char *method) {
        struct MHD_Connection *c = r->conn;
        const char *cl, *te, *reason, *msg = "";
        int chunked, coded = 0;
        unsigned long long length = 0;
        int framing[2] = { 0, 0 };

        /* Two lengths or codings (libmicrohttpd takes the first, a
         * proxy in front may take the other: request smuggling), RFC 9112
         * 6.3. */
        MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, framing);
        if (framing[0] > 1 || framing[1] > 1 || (framing[0] && framing[1]))
                return send_error(
                    gw, r, MHD_HTTP_BAD_REQUEST,
                    framing[0] ? "Content-Length" : "Transfer-Encoding",
                    "AMBIGUOUS_LENGTH",
                    "more than one Content-Length or Transfer-Encoding, or "
                    "both: the body's length is ambiguous",
                    NO_HEADER);
        /* A coding libmicrohttpd cannot read would leave the request
         * waiting for its deadline with no answer (RFC 9112 6.1). */
        te = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_TRANSFER_ENCODING);
        if (te && strcasecmp(te, "chunked"))
                return send_error(gw, r, MHD_HTTP_NOT_IMPLEMENTED,
                                  "Transfer-Encoding", "NOT_IMPLEMENTED",
                                  "only the chunked transfer coding is read",
                                  NO_HEADER);
        chunked = te != NULL;
        cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl)
                length = strtoull(cl, NULL, 10);
        /* A NUL sent as %00 ends the decoded path early: "/v1/commands%00x"
         * would be routed as /v1/commands. No path of ours has one. */
        if (strstr(r->path, "%00"))
                url = "";
        if (!strcmp(url, "/healthz") || !strcmp(url, "/metrics")) {
                /* HEAD: the same answer, libmicrohttpd leaves the body. */
                if (strcmp(method, MHD_HTTP_METHOD_GET) &&
                    strcmp(method, MHD_HTTP_METHOD_HEAD))
                        return refuse_unread(gw, r, length, chunked,
                                             MHD_HTTP_METHOD_NOT_ALLOWED, NULL,
                                             "METHOD_NOT_ALLOWED", "use GET",
                                             ALLOW("GET, HEAD"));
                return url[1] == 'h' ? healthz(gw, r) : metrics(gw, r);
        }
        if (!strcmp(url, PATH_ONE))
                r->route = ROUTE_ONE;
        else if (!strcmp(url, PATH_BATCH))
                r->route = ROUTE_BATCH;
        else
                return refuse_unread(gw, r, length, chunked, MHD_HTTP_NOT_FOUND,
                                     NULL, "NOT_FOUND",
                                     "paths: POST " PATH_ONE
                                     ", POST " PATH_BATCH
                                     ", GET /healthz, GET /metrics",
                                     NO_HEADER);
        if (strcmp(method, MHD_HTTP_METHOD_POST))
                return refuse_unread(
                    gw, r, length, chunked, MHD_HTTP_METHOD_NOT_ALLOWED, NULL,
                    "METHOD_NOT_ALLOWED", "use POST", ALLOW("POST"));
        /* A compressed body would only fail as NOT_JSON later. */
        MHD_get_connection_values(c, MHD_HEADER_KIND, find_coding, &coded);
        if (coded)
                return refuse_unread(gw, r, length, chunked,
                                     MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                     "Content-Encoding", "UNSUPPORTED_ENCODING",
                                     "send the body uncompressed", NO_HEADER);
        if (length > (unsigned long long)gw->body_max) {
                char text[96];
                return refuse_unread(
                    gw, r, length, chunked, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                    "TOO_LARGE", body_max_text(gw, text, sizeof(text)),
                    NO_HEADER);
        }
        if ((reason = door_auth(gw, r, &msg)))
                return refuse_unread(gw, r, length, chunked,
                                     MHD_HTTP_UNAUTHORIZED, NULL, reason, msg,
                                     NO_HEADER);
        /* Browsers name the page a request comes from. With authentication
         * off, a page anywhere could otherwise post commands here (a
         * form's POST needs no CORS preflight); a signed request is an
         * adapter's, whatever proxy passed an Origin on. */
        if (!r->keys &&
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin"))
                return refuse_unread(
                    gw, r, length, chunked, MHD_HTTP_FORBIDDEN, "Origin",
                    "CROSS_ORIGIN",
                    "a request from a web page (it has an Origin header) "
                    "while authentication is off: the gateway takes "
                    "commands from servers only",
                    NO_HEADER);
        /* A Content-Length is held against the budget at once. */
        if ((msg = hold(r, (int64_t)length)))
                return refuse_unread(gw, r, length, chunked,
                                     MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "BUSY",
                                     msg, RETRY_AFTER(UNAVAILABLE_S));
        body_deadline(gw, r);
        if (length && !(r->body = malloc(length + 1)))
                return MHD_NO;
        r->cap = length ? length + 1 : 0;
        return MHD_YES;
}

/* A piece of the body. MHD_NO drops the connection (deadline passed). */
static enum MHD_Result receive(ordo_ingest_t *gw, req_t *r, const char *data,
                               size_t n) {
        int64_t left = r->deadline_ms - ordo_wall_ms();
        const char *busy;

        if (left <= 0) {
                r->timed_out = 1;
                return MHD_NO;
        }
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                  (unsigned int)((left + 999) / 1000));
        if (!r->refusal.status && r->len + n > (size_t)gw->body_max) {
                char text[96];
                refuse_later(r, MHD_HTTP_CONTENT_TOO_LARGE, NULL, "TOO_LARGE",
                             body_max_text(gw, text, sizeof(text)), NO_HEADER);
        }
        /* Held against the budget until the signature is checked; a
         * body without Content-Length is counted as it comes. */
        if (!r->refusal.status && r->len + n > r->held &&
            (busy = hold(r, (int64_t)(r->len + n - r->held))))
                refuse_later(r, MHD_HTTP_SERVICE_UNAVAILABLE, NULL, "BUSY",
                             busy, RETRY_AFTER(UNAVAILABLE_S));
        if (r->refusal.status) /* read and dropped, within the deadline */
                return MHD_YES;
        if (r->len + n + 1 > r->cap) {
                size_t cap = r->cap ? r->cap : 1024;
                char *b;
                while (cap < r->len + n + 1)
                        cap *= 2;
                if (!(b = realloc(r->body, cap)))
                        return MHD_NO;
                r->body = b;
                r->cap = cap;
        }
        memcpy(r->body + r->len, data, n);
        r->len += n;
        r->body[r->len] = '\0';
        return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
        ordo_ingest_t *gw = cls;
        req_t *r = *con_cls; /* made by on_uri with the path as sent */
        (void)version;

        if (!r)
                return MHD_NO; /* out of memory in on_uri */
        if (!r->started) {
                r->started = 1;
                r->conn = c;
                return door(gw, r, url, method);
        }
        if (r->state == ST_WAITING)
                return answer(gw, r); /* resumed: every report is in */
        if (*upload_data_size) {
                size_t n = *upload_data_size;
                *upload_data_size = 0;
                return receive(gw, r, upload_data, n);
        }
        return process(gw, r, method);
}

/* Called with the request line's URI before libmicrohttpd decodes it: the
 * signature covers the path as sent (docs/command-contract.md). Its result
 * is the request's context, freed in on_completed. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c) {
        req_t *r = calloc(1, sizeof(*r));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        size_t n = strcspn(uri, "?");

        if (!r)
                return NULL;
        r->gw = cls;
        r->conn = c;
        if (n > PATH_MAX_SEEN)
                n = PATH_MAX_SEEN; /* not a path of ours: 404 */
        memcpy(r->path, uri, n);
        ordo_strlcpy(r->peer, "-", sizeof(r->peer));
        if (ci && ci->client_addr) {
                const struct sockaddr *sa = ci->client_addr;
                if (sa->sa_family == AF_INET)
                        inet_ntop(AF_INET,
                                  &((const struct sockaddr_in *)sa)->sin_addr,
                                  r->peer, sizeof(r->peer));
                else if (sa->sa_family == AF_INET6)
                        inet_ntop(AF_INET6,
                                  &((const struct sockaddr_in6 *)sa)->sin6_addr,
                                  r->peer, sizeof(r->peer));
        }
        return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        ordo_ingest_t *gw = cls;
        req_t *r = *con_cls;
        (void)c;

        /* A request whose client went away while it waited for Kafka is
         * counted as disconnected, not under the status it did not get;
         * so is one that ends without an answer, or as timeout when it
         * missed its deadline. */
        if (r && r->state == ST_WAITING) {
                atomic_fetch_sub(&gw->waiting, 1);
                if (r->answered && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                        count_status(gw, r->status);
                else
                        atomic_fetch_add(&gw->metrics.disconnected, 1);
        } else if (r && !r->answered) {
                /* Not started: over before ordo saw the headers, refused
                 * by libmicrohttpd itself (a Content-Length it cannot
                 * read; its error page's status is not known here). */
                if (!r->started && toe == MHD_REQUEST_TERMINATED_WITH_ERROR)
                        atomic_fetch_add(&gw->metrics.by_library, 1);
                else if (r->timed_out ||
                         toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED) {
                        atomic_fetch_add(&gw->metrics.timed_out, 1);
                        if (r->started)
                                log_refused(gw, r, "none",
                                            r->refusal.status
                                                ? r->refusal.reason
                                                : "BODY_DEADLINE");
                } else if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK &&
                           toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN)
                        atomic_fetch_add(&gw->metrics.disconnected, 1);
        }
        req_free(r);
        *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        ordo_ingest_t *gw = cls;
        char buf[512];
        size_t n;

        /* Under a flood (connections over the per-peer cap) libmicrohttpd
         * says so for each: the same brake as the refusals. */
        if (!ordo_ratelimit_take(gw->rl_log, "log", ordo_wall_ms())) {
                atomic_fetch_add(&gw->log_skipped, 1);
                return;
        }
        vsnprintf(buf, sizeof(buf), fmt, ap);
        n = strlen(buf);
        while (n && buf[n - 1] == '\n')
                buf[--n] = '\0';
        ORDO_LOG(WARN, "ingest", "mhd=\"%s\"", buf);
}

/* ---- setup -------------------------------------------------------------- */

/* A secret shorter than this is guessable offline from one signed
 * request; it still loads (existing deployments keep working), with a
 * warning. */
#define ORDO_SECRET_MIN 16

/* Loads the keys file and warns about each key without scope= and each
 * short secret. */
static ordo_keyset_t *load_keys(const char *path, char *errstr,
                                size_t errstr_size) {
        ordo_keyset_t *ks = ordo_keyset_load(path, errstr, errstr_size);
        size_t i;

        for (i = 0; i < ordo_keyset_count(ks); i++) {
                const ordo_key_t *k = ordo_keyset_at(ks, i);
                if (!k->scoped)
                        ORDO_LOG(WARN, "ingest",
                                 "msg=\"key has no scope=, so it may send "
                                 "every command type; give it the types it "
                                 "needs (docs/command-contract.md)\" key=%s",
                                 k->id);
                if (strlen(k->secret) < ORDO_SECRET_MIN)
                        ORDO_LOG(WARN, "ingest",
                                 "msg=\"secret is shorter than %d bytes and "
                                 "can be guessed from one signed request; use "
                                 "e.g. openssl rand -hex 32\" key=%s",
                                 ORDO_SECRET_MIN, k->id);
        }
        return ks;
}

int ordo_ingest_reload_keys(ordo_ingest_t *gw, char *errstr,
                            size_t errstr_size) {
        ordo_keyset_t *ks, *old;

        if (!gw->keys_path[0]) {
                snprintf(errstr, errstr_size,
                         "ingest.keys.file is empty: authentication is off, "
                         "no keys to reload (restart to turn it on)");
                return -1;
        }
        if (!(ks = load_keys(gw->keys_path, errstr, errstr_size)))
                return -1; /* the old keys stay */
        pthread_mutex_lock(&gw->keys_lock);
        old = gw->keys;
        gw->keys = ks;
        pthread_mutex_unlock(&gw->keys_lock);
        /* Requests still holding the old set keep it until they end. */
        ordo_keyset_release(old);
        ORDO_LOG(INFO, "ingest", "msg=\"keys reloaded\" keys=%zu",
                 ordo_keyset_count(ks));
        return 0;
}

static int parse_listen(const char *s, struct sockaddr_in *sa, char *errstr,
                        size_t errstr_size) {
        if (!ordo_parse_listen(s, sa))
                return 0;
        snprintf(errstr, errstr_size,
                 "ingest.listen: expected IPv4 HOST:PORT, got \"%.64s\"", s);
        return -1;
}

static int set_default(ordo_config_t *conf, const char *key, const char *value,
                       char *errstr, size_t errstr_size) {
        if (ordo_config_get(conf, key))
                return 0;
        return ordo_config_set(conf, key, value, errstr, errstr_size) ? -1 : 0;
}

ordo_ingest_t *ordo_ingest_new(ordo_config_t *conf, char *errstr,
                               size_t errstr_size) {
        ordo_ingest_t *gw = calloc(1, sizeof(*gw));
        struct sockaddr_in sa;
        const char *keys_file = ordo_config_get(conf, "ingest.keys.file");
        int64_t threads = ordo_config_get_int(conf, "ingest.threads");
        int64_t instance = ordo_config_get_int(conf, "ingest.instance.id");
        int64_t per_peer =
            ordo_config_get_int(conf, "ingest.peer.connections.max");
        int i;

        if (!gw) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        gw->window_ms = ordo_config_get_int(conf, "ingest.signature.window.ms");
        gw->body_max = ordo_config_get_int(conf, "ingest.body.max");
        gw->body_timeout_ms =
            ordo_config_get_int(conf, "ingest.body.timeout.ms");
        gw->unauth_max = ordo_config_get_int(conf, "ingest.unauth.bytes.max");
        gw->unauth_peer_max =
            ordo_config_get_int(conf, "ingest.unauth.peer.bytes.max");
        pthread_mutex_init(&gw->keys_lock, NULL);
        gw->keys_lock_made = 1;
        pthread_mutex_init(&gw->limit_lock, NULL);
        gw->limit_lock_made = 1;
        {
                /* Each bound names its key: which one is wrong, and why. */
                const struct {
                        const char *key;
                        int ok;
                        const char *want;
                } bounds[] = {
                        { "ingest.signature.window.ms", gw->window_ms >= 1,
                          "at least 1" },
                        { "ingest.body.max", gw->body_max >= 1, "at least 1" },
                        { "ingest.body.timeout.ms", gw->body_timeout_ms >= 1,
                          "at least 1" },
                        { "ingest.peer.connections.max", per_peer >= 1,
                          "at least 1" },
                        { "ingest.unauth.bytes.max",
                          gw->unauth_max >= gw->body_max,
                          "at least ingest.body.max" },
                        { "ingest.unauth.peer.bytes.max",
                          gw->unauth_peer_max >= gw->body_max,
                          "at least ingest.body.max" },
                        { "ingest.threads", threads >= 1 && threads <= 64,
                          "1..64" },
                        { "ingest.instance.id",
                          instance <= ORDO_IDGEN_INSTANCE_MAX, "-1..1048575" },
                };
                size_t b;
                for (b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++)
                        if (!bounds[b].ok) {
                                snprintf(errstr, errstr_size,
                                         "%s = %s: must be %s", bounds[b].key,
                                         ordo_config_get(conf, bounds[b].key),
                                         bounds[b].want);
                                goto fail;
                        }
        }
        if (parse_listen(ordo_config_get(conf, "ingest.listen"), &sa, errstr,
                         errstr_size))
                goto fail;
        if (keys_file && *keys_file) {
                if (strlen(keys_file) >= sizeof(gw->keys_path)) {
                        snprintf(errstr, errstr_size,
                                 "ingest.keys.file: path too long");
                        goto fail;
                }
                ordo_strlcpy(gw->keys_path, keys_file, sizeof(gw->keys_path));
                if (!(gw->keys = load_keys(keys_file, errstr, errstr_size)))
                        goto fail;
        }
        if (instance < 0)
                instance = ordo_admit_random_instance();
        ordo_door_init(&gw->door, (uint32_t)instance);
        gw->door_made = 1;
        gw->rl = ordo_ratelimit_new(
            ordo_config_get_int(conf, "ingest.rate.per.user"),
            ordo_config_get_int(conf, "ingest.rate.burst"),
            (size_t)ordo_config_get_int(conf, "ingest.rate.users.max"));
        gw->rl_key = ordo_ratelimit_new(
            ordo_config_get_int(conf, "ingest.rate.per.key"),
            ordo_config_get_int(conf, "ingest.rate.key.burst"), 1024);
        gw->rl_peer = ordo_ratelimit_new(
            ordo_config_get_int(conf, "ingest.rate.per.peer"),
            ordo_config_get_int(conf, "ingest.rate.peer.burst"),
            (size_t)ordo_config_get_int(conf, "ingest.rate.users.max"));
        gw->rl_log = ordo_ratelimit_new(LOG_RATE, LOG_BURST, 16);
        /* a peer's share above the total is the total */
        gw->unauth = ordo_budget_new(
            gw->unauth_max, gw->unauth_peer_max,
            (size_t)ordo_config_get_int(conf, "ingest.rate.users.max"));
        gw->seen = ordo_seen_new(
            (size_t)ordo_config_get_int(conf, "ingest.replay.max"));
        if (!gw->rl || !gw->rl_key || !gw->rl_peer || !gw->rl_log ||
            !gw->unauth || !gw->seen) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        if (pthread_key_create(&gw->codec_key, codec_free)) {
                snprintf(errstr, errstr_size, "pthread_key_create failed");
                goto fail;
        }
        gw->codec_key_made = 1;
        for (i = 0; i < ORDO_TOPIC__COUNT; i++)
                ordo_topic_name(conf, (ordo_topic_t)i, gw->topics[i],
                                sizeof(gw->topics[i]));

        /* A dead broker must turn into 503 within seconds, not the
         * librdkafka default of 5 minutes. */
        if (set_default(conf, "kafka.message.timeout.ms", "5000", errstr,
                        errstr_size))
                goto fail;
        /* librdkafka times a message out only when the broker's thread
         * turns, which waits out its reconnect backoff (up to 10 s by
         * default) while the broker refuses connections: 503s came 5 to
         * 15 s after the request (an outside audit). 1 s at most. */
        if (set_default(conf, "kafka.reconnect.backoff.max.ms", "1000", errstr,
                        errstr_size))
                goto fail;
        gw->rk = ordo_kafka_producer_new(conf, NULL, delivered, gw, errstr,
                                         errstr_size);
        if (!gw->rk)
                goto fail;
        if (pthread_create(&gw->poller, NULL, poll_loop, gw)) {
                snprintf(errstr, errstr_size, "cannot start a thread");
                goto fail;
        }
        gw->poller_started = 1;
        check_kafka(gw);
        if (pthread_create(&gw->watcher, NULL, watch_topics, gw)) {
                snprintf(errstr, errstr_size, "cannot start a thread");
                goto fail;
        }
        gw->watcher_started = 1;

        errno = 0;
        gw->mhd = MHD_start_daemon(
            MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                MHD_USE_ERROR_LOG,
            0, NULL, NULL, on_request, gw, MHD_OPTION_EXTERNAL_LOGGER,
            on_mhd_log, gw, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
            MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)threads,
            MHD_OPTION_CONNECTION_LIMIT, 20000u,
            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)per_peer,
            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)IDLE_TIMEOUT_S,
            MHD_OPTION_URI_LOG_CALLBACK, on_uri, gw,
            MHD_OPTION_NOTIFY_COMPLETED, on_completed, gw, MHD_OPTION_END);
        if (!gw->mhd) {
                /* errno is bind's (libmicrohttpd closes the socket after) */
                snprintf(errstr, errstr_size, "cannot listen on %s (%s)",
                         ordo_config_get(conf, "ingest.listen"),
                         errno ? strerror(errno) : "address in use?");
                goto fail;
        }
        gw->port = (int)ordo_http_bound_port(gw->mhd, &sa);

        if (!gw->keys)
                ORDO_LOG(WARN, "ingest",
                         "msg=\"AUTHENTICATION IS OFF: ingest.keys.file is "
                         "empty, so anyone who can reach port %d can send "
                         "commands; set it before exposing the gateway\"",
                         gw->port);
        ORDO_LOG(INFO, "ingest",
                 "msg=listening port=%d threads=%d keys=%zu instance=%u "
                 "rate.per.user=%lld rate.burst=%lld",
                 gw->port, (int)threads, ordo_keyset_count(gw->keys),
                 gw->door.ids.instance,
                 (long long)ordo_config_get_int(conf, "ingest.rate.per.user"),
                 (long long)ordo_config_get_int(conf, "ingest.rate.burst"));
        return gw;
fail:
        ordo_ingest_destroy(gw);
        return NULL;
}

int ordo_ingest_port(const ordo_ingest_t *gw) {
        return gw->port;
}

/* One line at the stop, as every stage logs its counts: what the
 * gateway answered, by class, and what Kafka took. */
static void log_totals(ordo_ingest_t *gw) {
        metrics_t *m = &gw->metrics;
        uint64_t by_class[6] = { 0 }; /* 1xx..5xx, other */
        uint64_t unanswered =
            atomic_load(&m->disconnected) + atomic_load(&m->timed_out);
        size_t i;

        for (i = 0; i <= N_STATUSES; i++)
                by_class[i < N_STATUSES ? statuses[i] / 100 : 0] +=
                    atomic_load(&m->requests[i]);
        ORDO_LOG(INFO, "ingest",
                 "msg=stopped answered_2xx=%llu answered_4xx=%llu "
                 "answered_5xx=%llu answered_by_library=%llu "
                 "unanswered=%llu commands_acked=%llu commands_failed=%llu",
                 (unsigned long long)by_class[2],
                 (unsigned long long)by_class[4],
                 (unsigned long long)by_class[5],
                 (unsigned long long)atomic_load(&m->by_library),
                 (unsigned long long)unanswered,
                 (unsigned long long)atomic_load(&m->acked),
                 (unsigned long long)atomic_load(&m->failed));
}

void ordo_ingest_destroy(ordo_ingest_t *gw) {
        int64_t deadline = ordo_wall_ms() + SHUTDOWN_WAIT_MS;

        if (!gw)
                return;
        atomic_store(&gw->stopping, 1);
        if (gw->rk && gw->poller_started) {
                /* libmicrohttpd refuses to stop with suspended
                 * connections: let every waiting request get its report,
                 * purging what Kafka has not taken in time. */
                while (atomic_load(&gw->inflight) > 0 &&
                       ordo_wall_ms() < deadline)
                        usleep(10000);
                if (atomic_load(&gw->inflight) > 0) {
                        ORDO_LOG(WARN, "ingest",
                                 "msg=\"purging unacknowledged commands\" "
                                 "queued=%d",
                                 rd_kafka_outq_len(gw->rk));
                        rd_kafka_purge(gw->rk, RD_KAFKA_PURGE_F_QUEUE |
                                                   RD_KAFKA_PURGE_F_INFLIGHT);
                        while (atomic_load(&gw->inflight) > 0)
                                usleep(10000);
                }
                /* Every report is in; the answers they resumed are still
                 * to be written, and one cut off here would send the
                 * client to retry a command Kafka has (a second order,
                 * where the gateway made its id). */
                deadline = ordo_wall_ms() + ANSWER_WAIT_MS;
                while (gw->mhd && atomic_load(&gw->waiting) > 0 &&
                       ordo_wall_ms() < deadline)
                        usleep(10000);
        }
        if (gw->mhd)
                MHD_stop_daemon(gw->mhd);
        if (gw->poller_started || gw->watcher_started)
                atomic_store(&gw->stop_poller, 1);
        if (gw->poller_started)
                pthread_join(gw->poller, NULL);
        if (gw->watcher_started)
                pthread_join(gw->watcher, NULL);
        if (gw->rk) {
                rd_kafka_flush(gw->rk, 1000);
                rd_kafka_destroy(gw->rk);
        }
        log_totals(gw);
        if (gw->codec_key_made)
                pthread_key_delete(gw->codec_key);
        if (gw->door_made)
                ordo_door_fini(&gw->door);
        ordo_ratelimit_destroy(gw->rl);
        ordo_ratelimit_destroy(gw->rl_key);
        ordo_ratelimit_destroy(gw->rl_peer);
        ordo_ratelimit_destroy(gw->rl_log);
        ordo_budget_destroy(gw->unauth);
        ordo_seen_destroy(gw->seen);
        ordo_keyset_release(gw->keys);
        if (gw->keys_lock_made)
                pthread_mutex_destroy(&gw->keys_lock);
        if (gw->limit_lock_made)
                pthread_mutex_destroy(&gw->limit_lock);
        free(gw);
}
