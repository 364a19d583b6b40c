/*
 * ordo - the C client of the ingest gateway (ordo_client.h). The socket
 * is non-blocking and every wait is a poll() bounded by the request's
 * deadline, so one timeout covers connect, send and answer.
 */
#include "ordo_client.h"

#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hmac.h"

#define DEFAULT_TIMEOUT_MS 10000
#define ANSWER_MAX         (1024 * 1024) /* one command's answer is small */
#define COMMANDS_PATH      "/v1/commands"

struct ordo_client_s {
        char *host;
        int port;
        char *key_id; /* NULL: unsigned requests */
        char *secret;
        int timeout_ms;
        int fd;    /* -1: not connected */
        char *buf; /* the answer being read */
        size_t len, cap;
        int64_t last_ts; /* the last signature's timestamp */
};

/* ---- the pure steps ---------------------------------------------------- */

char *ordo_client_place_order_json(const char *order_id,
                                   const char *activity_id, const char *user_id,
                                   int64_t qty) {
        json_t *o;
        char *text;

        if (!activity_id || !user_id)
                return NULL;
        o = json_pack("{s:s, s:s, s:s, s:I}", "type", "PlaceOrder",
                      "activity_id", activity_id, "user_id", user_id, "qty",
                      (json_int_t)qty);
        if (!o)
                return NULL;
        if (order_id &&
            json_object_set_new(o, "order_id", json_string(order_id)) != 0) {
                json_decref(o);
                return NULL;
        }
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        return text;
}

char *ordo_client_request(const char *host, const char *path,
                          const char *key_id, const char *secret, int64_t ts_ms,
                          const char *body, size_t body_len, size_t *len,
                          char *errstr, size_t errstr_size) {
        char auth[512] = "", ts[24], sig[ORDO_HMAC_SHA256_HEX], *req;
        int head_len;

        if (key_id) {
                snprintf(ts, sizeof(ts), "%lld", (long long)ts_ms);
                if (ordo_ingest_sign(secret ? secret : "", "POST", path, ts,
                                     body, body_len, NULL, sig) != 0) {
                        snprintf(errstr, errstr_size,
                                 "HMAC-SHA256 unavailable in libcrypto");
                        return NULL;
                }
                if ((size_t)snprintf(auth, sizeof(auth),
                                     "X-Ordo-Key: %s\r\n"
                                     "X-Ordo-Timestamp: %s\r\n"
                                     "X-Ordo-Signature: %s\r\n",
                                     key_id, ts, sig) >= sizeof(auth)) {
                        snprintf(errstr, errstr_size, "key_id too long");
                        return NULL;
                }
        }
        head_len = snprintf(NULL, 0,
                            "POST %s HTTP/1.1\r\nHost: %s\r\n"
                            "Content-Type: application/json\r\n"
                            "Content-Length: %zu\r\n%s\r\n",
                            path, host, body_len, auth);
        req = malloc((size_t)head_len + body_len + 1);
        if (!req) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        snprintf(req, (size_t)head_len + 1,
                 "POST %s HTTP/1.1\r\nHost: %s\r\n"
                 "Content-Type: application/json\r\n"
                 "Content-Length: %zu\r\n%s\r\n",
                 path, host, body_len, auth);
        memcpy(req + head_len, body, body_len);
        req[head_len + body_len] = '\0';
        *len = (size_t)head_len + body_len;
        return req;
}

/* Copies the string member key of o into dst, "" when absent. */
static void copy_member(json_t *o, const char *key, char *dst, size_t size) {
        const char *v = json_string_value(json_object_get(o, key));
        snprintf(dst, size, "%s", v ? v : "");
}

/* Fills result from a JSON answer body; a body that is not JSON becomes
 * result->error as text (a proxy's HTML page, say). */
static void parse_body(const char *body, size_t len,
                       ordo_client_result_t *result) {
        json_t *o = json_loadb(body, len, 0, NULL);
        json_int_t ms;

        if (!json_is_object(o)) {
                snprintf(result->error, sizeof(result->error), "%.*s",
                         (int)(len < sizeof(result->error) ? len : 255), body);
                json_decref(o);
                return;
        }
        copy_member(o, "command_id", result->command_id,
                    sizeof(result->command_id));
        copy_member(o, "order_id", result->order_id, sizeof(result->order_id));
        copy_member(o, "field", result->field, sizeof(result->field));
        copy_member(o, "reason", result->reason, sizeof(result->reason));
        copy_member(o, "error", result->error, sizeof(result->error));
        /* Retry-After wins; the body's milliseconds, rounded up, are the
         * fallback when a proxy dropped the header. */
        ms = json_integer_value(json_object_get(o, "retry_after_ms"));
        if (!result->retry_after_s && ms > 0)
                result->retry_after_s = (int)((ms + 999) / 1000);
        json_decref(o);
}

/* 1 if the header line [p, end) is "name: ..." (any case); *value then
 * points past the colon and its blanks. */
static int header_is(const char *p, const char *end, const char *name,
                     const char **value) {
        size_t n = strlen(name);
        if ((size_t)(end - p) <= n || p[n] != ':' ||
            strncasecmp(p, name, n) != 0)
                return 0;
        for (p += n + 1; p < end && (*p == ' ' || *p == '\t'); p++)
                ;
        *value = p;
        return 1;
}

/* The decimal number at [p, end), -1 if there is none or it is huge. */
static long long number(const char *p, const char *end) {
        long long v = 0;
        if (p >= end || *p < '0' || *p > '9')
                return -1;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
                if (v > (long long)ANSWER_MAX * 1024)
                        return -1;
                v = v * 10 + (*p - '0');
        }
        return v;
}

int ordo_client_parse(const char *buf, size_t len, size_t *consumed,
                      int *closes, ordo_client_result_t *result, char *errstr,
                      size_t errstr_size) {
        const char *head_end, *p, *eol, *v;
        long long body_len = -1;
        int close = 0, http10;
        size_t head_len;

        /* memmem takes no NULL, even for no bytes (a first read) */
        head_end = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL;

        if (!head_end) {
                if (len > ANSWER_MAX)
                        goto too_large;
                return 0;
        }
        head_len = (size_t)(head_end - buf) + 4;
        if (head_len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
            number(buf + 9, buf + 12) < 100 ||
            (head_len > 12 && buf[12] != ' ' && buf[12] != '\r')) {
                snprintf(errstr, errstr_size, "not an HTTP/1.x answer");
                return -1;
        }
        memset(result, 0, sizeof(*result));
        result->status = (int)number(buf + 9, buf + 12);
        http10 = buf[7] == '0';
        close = http10;
        for (p = (const char *)memchr(buf, '\n', head_len) + 1; p < head_end;
             p = eol + 2) {
                eol = memmem(p, (size_t)(head_end + 2 - p), "\r\n", 2);
                if (header_is(p, eol, "Content-Length", &v)) {
                        body_len = number(v, eol);
                        if (body_len < 0) {
                                snprintf(errstr, errstr_size,
                                         "bad Content-Length");
                                return -1;
                        }
                } else if (header_is(p, eol, "Transfer-Encoding", &v)) {
                        snprintf(errstr, errstr_size,
                                 "Transfer-Encoding not supported");
                        return -1;
                } else if (header_is(p, eol, "Connection", &v)) {
                        if ((size_t)(eol - v) >= 5 &&
                            strncasecmp(v, "close", 5) == 0)
                                close = 1;
                        else if ((size_t)(eol - v) >= 10 &&
                                 strncasecmp(v, "keep-alive", 10) == 0)
                                close = 0;
                } else if (header_is(p, eol, "Retry-After", &v)) {
                        /* Seconds; the HTTP-date form is not used by the
                         * gateway and counts as absent. */
                        long long s = number(v, eol);
                        result->retry_after_s = s > 0 && s < 86400 ? (int)s : 0;
                }
        }
        if (body_len < 0) {
                if ((result->status >= 100 && result->status < 200) ||
                    result->status == 204 || result->status == 304) {
                        body_len = 0;
                } else {
                        snprintf(errstr, errstr_size,
                                 "answer %d without Content-Length",
                                 result->status);
                        return -1;
                }
        }
        if (body_len > ANSWER_MAX)
                goto too_large;
        if (len - head_len < (size_t)body_len)
                return 0;
        parse_body(head_end + 4, (size_t)body_len, result);
        *consumed = head_len + (size_t)body_len;
        if (closes)
                *closes = close;
        return 1;

too_large:
        snprintf(errstr, errstr_size, "answer over %d bytes", ANSWER_MAX);
        return -1;
}

/* ---- the connection ---------------------------------------------------- */

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void disconnect(ordo_client_t *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

/* Waits for events on the socket until deadline: 1 ready, 0 timed out,
 * -1 failed (errno). */
static int wait_fd(int fd, short events, int64_t deadline) {
        struct pollfd pfd = { .fd = fd, .events = events };
        int r;
        for (;;) {
                int64_t left = deadline - mono_ms();
                if (left <= 0)
                        return 0;
                r = poll(&pfd, 1, (int)left);
                if (r >= 0 || errno != EINTR)
                        return r;
        }
}

/* A kept connection the server has closed (its idle timeout) reads as
 * end of file; finding that out before sending means a command is never
 * sent into a dead connection, where its fate would be unknown. */
static void drop_if_closed(ordo_client_t *c) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        /* Readable while idle: end of file, an error, or bytes nobody
         * asked for; none of them leaves a usable connection. */
        if (c->fd >= 0 && poll(&pfd, 1, 0) != 0)
                disconnect(c);
}

static int connect_to(ordo_client_t *c, int64_t deadline, char *errstr,
                      size_t errstr_size) {
        struct addrinfo hints, *res = NULL, *ai;
        char port[16];
        int rc, one = 1, err = 0;
        socklen_t err_len = sizeof(err);

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port, sizeof(port), "%d", c->port);
        rc = getaddrinfo(c->host, port, &hints, &res);
        if (rc != 0) {
                snprintf(errstr, errstr_size, "%s: %s", c->host,
                         gai_strerror(rc));
                return -1;
        }
        snprintf(errstr, errstr_size, "%s:%d: no address", c->host, c->port);
        for (ai = res; ai; ai = ai->ai_next) {
                c->fd = socket(ai->ai_family,
                               ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                               ai->ai_protocol);
                if (c->fd < 0)
                        continue;
                if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
                        break;
                if (errno == EINPROGRESS) {
                        rc = wait_fd(c->fd, POLLOUT, deadline);
                        err = rc == 0 ? ETIMEDOUT : rc < 0 ? errno : 0;
                        if (!err && getsockopt(c->fd, SOL_SOCKET, SO_ERROR,
                                               &err, &err_len) != 0)
                                err = errno;
                        if (!err)
                                break;
                } else {
                        err = errno;
                }
                snprintf(errstr, errstr_size, "connect %s:%d: %s", c->host,
                         c->port, strerror(err));
                disconnect(c);
        }
        freeaddrinfo(res);
        if (c->fd < 0)
                return -1;
        /* A request is written at once; Nagle would only delay it. */
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        return 0;
}

static int send_all(ordo_client_t *c, const char *p, size_t n, int64_t deadline,
                    char *errstr, size_t errstr_size) {
        while (n > 0) {
                ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
                if (w > 0) {
                        p += w;
                        n -= (size_t)w;
                } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                        int r = wait_fd(c->fd, POLLOUT, deadline);
                        if (r <= 0) {
                                snprintf(errstr, errstr_size, "send: %s",
                                         r == 0 ? "timed out"
                                                : strerror(errno));
                                return -1;
                        }
                } else {
                        snprintf(errstr, errstr_size, "send: %s",
                                 strerror(errno));
                        return -1;
                }
        }
        return 0;
}

/* Reads until one whole answer (1xx answers skipped) is in result. */
static int read_answer(ordo_client_t *c, ordo_client_result_t *result,
                       int64_t deadline, char *errstr, size_t errstr_size) {
        size_t consumed = 0;
        int closes = 0, r;

        c->len = 0;
        for (;;) {
                ssize_t n;
                r = ordo_client_parse(c->buf, c->len, &consumed, &closes,
                                      result, errstr, errstr_size);
                if (r < 0)
                        return -1;
                if (r == 1 && result->status >= 200)
                        break;
                if (r == 1) { /* 100 Continue and the like */
                        memmove(c->buf, c->buf + consumed, c->len - consumed);
                        c->len -= consumed;
                        continue;
                }
                if (c->cap - c->len < 4096) {
                        size_t cap = c->cap ? c->cap * 2 : 8192;
                        char *b = realloc(c->buf, cap);
                        if (!b) {
                                snprintf(errstr, errstr_size, "out of memory");
                                return -1;
                        }
                        c->buf = b;
                        c->cap = cap;
                }
                n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
                if (n > 0) {
                        c->len += (size_t)n;
                } else if (n == 0) {
                        snprintf(errstr, errstr_size,
                                 "connection closed before the answer");
                        return -1;
                } else if (errno == EAGAIN || errno == EINTR) {
                        r = wait_fd(c->fd, POLLIN, deadline);
                        if (r <= 0) {
                                snprintf(errstr, errstr_size, "no answer: %s",
                                         r == 0 ? "timed out"
                                                : strerror(errno));
                                return -1;
                        }
                } else {
                        snprintf(errstr, errstr_size, "recv: %s",
                                 strerror(errno));
                        return -1;
                }
        }
        if (closes || consumed != c->len)
                disconnect(c); /* extra bytes: the stream is out of step */
        return 0;
}

/* ---- the handle -------------------------------------------------------- */

ordo_client_t *ordo_client_new(const char *host, int port, const char *key_id,
                               const char *secret, int timeout_ms, char *errstr,
                               size_t errstr_size) {
        ordo_client_t *c;

        if (!host || !*host || port <= 0 || port > 65535) {
                snprintf(errstr, errstr_size, "bad address %s:%d",
                         host ? host : "(null)", port);
                return NULL;
        }
        if (key_id && (!*key_id || !secret)) {
                snprintf(errstr, errstr_size,
                         "a key_id needs a secret (and is not empty)");
                return NULL;
        }
        if (timeout_ms < 0) {
                snprintf(errstr, errstr_size, "timeout_ms %d < 0", timeout_ms);
                return NULL;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->fd = -1;
        c->port = port;
        c->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
        c->host = strdup(host);
        c->key_id = key_id ? strdup(key_id) : NULL;
        c->secret = key_id ? strdup(secret) : NULL;
        if (!c->host || (key_id && (!c->key_id || !c->secret))) {
                ordo_client_destroy(c);
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        return c;
}

void ordo_client_destroy(ordo_client_t *c) {
        if (!c)
                return;
        disconnect(c);
        free(c->host);
        free(c->key_id);
        free(c->secret);
        free(c->buf);
        free(c);
}

int ordo_client_send(ordo_client_t *c, const char *json,
                     ordo_client_result_t *result, char *errstr,
                     size_t errstr_size) {
        int64_t deadline = mono_ms() + c->timeout_ms;
        size_t len;
        char *req;
        int64_t ts;
        int rc;

        memset(result, 0, sizeof(*result));
        if (!json) {
                snprintf(errstr, errstr_size, "no command");
                return -1;
        }
        /* A timestamp never used before by this client: the same body
         * sent twice within a millisecond would otherwise carry the same
         * signature, and the second be REPLAYED. */
        ts = wall_ms();
        c->last_ts = ts = ts > c->last_ts ? ts : c->last_ts + 1;
        req = ordo_client_request(c->host, COMMANDS_PATH, c->key_id, c->secret,
                                  ts, json, strlen(json), &len, errstr,
                                  errstr_size);
        if (!req)
                return -1;
        drop_if_closed(c);
        rc = c->fd >= 0 ? 0 : connect_to(c, deadline, errstr, errstr_size);
        if (rc == 0)
                rc = send_all(c, req, len, deadline, errstr, errstr_size);
        if (rc == 0)
                rc = read_answer(c, result, deadline, errstr, errstr_size);
        if (rc != 0)
                disconnect(c);
        free(req);
        return rc;
}

int ordo_client_place_order(ordo_client_t *c, const char *order_id,
                            const char *activity_id, const char *user_id,
                            int64_t qty, ordo_client_result_t *result,
                            char *errstr, size_t errstr_size) {
        char *json =
            ordo_client_place_order_json(order_id, activity_id, user_id, qty);
        int rc;

        if (!json) {
                memset(result, 0, sizeof(*result));
                snprintf(errstr, errstr_size,
                         "PlaceOrder needs activity_id and user_id");
                return -1;
        }
        rc = ordo_client_send(c, json, result, errstr, errstr_size);
        free(json);
        return rc;
}
