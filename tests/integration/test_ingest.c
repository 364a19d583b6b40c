/*
 * Integration: the HTTP gateway (producers/ingest.h) in-process against the
 * real Kafka of infra/ (kafka.bootstrap.servers default 127.0.0.1:9092; run
 * `infra/stack up` first). Each test starts its own gateway on a free port
 * with its own topic prefix ("ingest<pid>x<n>."), talks to it with a tiny
 * HTTP/1.1 client over a socket, signs requests with libcrypto's one-shot
 * HMAC() (not the gateway's code), and reads the topics back with a plain
 * consumer and the Avro codec.
 *
 * What is checked comes from issue 6 and RULES.md "Units" (the ingest
 * stamps ts_ms; a trusted batch source may supply it; command ids are
 * generated when absent) and docs/command-contract.md "HTTP gateway".
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "drop_topics.h"
#include "ingest.h"
#include "kafka.h"

#define KEY_ID       "adapter-1"
#define SECRET       "s3cret-adapter"
#define BATCH_ID     "replayer"
#define BATCH_SECRET "s3cret-batch"
/* Scoped keys (issue 14 item 3): a payment provider and a shop front end. */
#define PAY_ID       "payments"
#define PAY_SECRET   "s3cret-pay"
#define FRONT_ID     "front"
#define FRONT_SECRET "s3cret-front"

static ordo_config_t *conf;
static ordo_ingest_t *gw;
static char keys_path[64];
static int seq;

static int64_t wall_ms(void) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void set(ordo_config_t *c, const char *k, const char *v) {
        char err[256];
        cr_assert_eq(ordo_config_set(c, k, v, err, sizeof(err)), 0, "%s", err);
}

/* A config with a unique topic prefix and the keys file; extra pairs are
 * "key=value" strings ending in NULL. */
static ordo_config_t *new_conf(const char *const *extra) {
        ordo_config_t *c = ordo_config_new();
        char prefix[64], err[256];
        const char *bootstrap = getenv("ORDO_TEST_KAFKA");

        snprintf(prefix, sizeof(prefix), "ingest%dx%d.", (int)getpid(), seq++);
        set(c, "topic.prefix", prefix);
        set(c, "topic.partitions", "2");
        set(c, "ingest.listen", "127.0.0.1:0");
        set(c, "ingest.keys.file", keys_path);
        if (bootstrap)
                set(c, "kafka.bootstrap.servers", bootstrap);
        for (; extra && *extra; extra++)
                cr_assert_eq(ordo_config_set_pair(c, *extra, err, sizeof(err)),
                             0, "%s", err);
        return c;
}

static void write_keys(void) {
        FILE *f;
        snprintf(keys_path, sizeof(keys_path), "/tmp/ordo-ingest-keys-%d",
                 (int)getpid());
        f = fopen(keys_path, "w");
        cr_assert(f);
        fprintf(f,
                "# test keys\n%s %s\n%s %s batch\n"
                "%s %s scope=ConfirmPayment,RefundOrder\n"
                "%s %s scope=PlaceOrder,CancelOrder,ConfirmReceipt\n",
                KEY_ID, SECRET, BATCH_ID, BATCH_SECRET, PAY_ID, PAY_SECRET,
                FRONT_ID, FRONT_SECRET);
        fclose(f);
}

static void stop(void);

/* Criterion runs the suite's .init and then a test's own, so a test with
 * its own gateway replaces the suite's. */
static void start(const char *const *extra) {
        char err[512];
        if (gw)
                stop();
        write_keys();
        conf = new_conf(extra);
        cr_assert_eq(ordo_kafka_ensure_topics(conf, NULL, err, sizeof(err)), 0,
                     "is Kafka up (infra/stack up)? %s", err);
        gw = ordo_ingest_new(conf, err, sizeof(err));
        cr_assert(gw, "%s", err);
}

static void stop(void) {
        ordo_ingest_destroy(gw);
        ordo_test_drop_topics(conf);
        ordo_config_destroy(conf);
        unlink(keys_path);
        gw = NULL;
        conf = NULL;
}

static void setup(void) {
        start(NULL);
}

/* ---- a tiny HTTP/1.1 client ------------------------------------------- */

typedef struct {
        int status;
        char head[4096];
        char *body;
        size_t body_len;
        int64_t ms; /* time to answer */
} resp_t;

static void resp_free(resp_t *r) {
        free(r->body);
}

/* One request on its own connection ("Connection: close"); headers is ""
 * or lines ending in \r\n. */
static resp_t http(int port, const char *method, const char *path,
                   const char *headers, const char *body, size_t body_len) {
        struct sockaddr_in sa;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        char req[2048], *buf = NULL, *sep;
        size_t len = 0, cap = 0;
        ssize_t n;
        resp_t r;
        int64_t t0 = wall_ms();

        memset(&r, 0, sizeof(r));
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        cr_assert(fd >= 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 "Content-Type: application/json\r\n%sContent-Length: "
                 "%zu\r\n\r\n",
                 method, path, headers, body_len);
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        /* The server may answer (413) before reading the whole body. */
        if (body_len)
                (void)!write(fd, body, body_len);
        for (;;) {
                if (cap - len < 4096) {
                        cap = cap ? cap * 2 : 65536;
                        buf = realloc(buf, cap + 1);
                }
                n = read(fd, buf + len, cap - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        r.ms = wall_ms() - t0;
        cr_assert(buf && len > 12, "no answer");
        buf[len] = '\0';
        r.status = atoi(buf + 9);
        sep = strstr(buf, "\r\n\r\n");
        cr_assert(sep);
        snprintf(r.head, sizeof(r.head), "%.*s", (int)(sep - buf), buf);
        r.body_len = len - (size_t)(sep + 4 - buf);
        r.body = strdup(sep + 4);
        free(buf);
        return r;
}

/* The headers of a signed request: hex(HMAC-SHA256(secret, method \n path
 * \n timestamp \n body)), computed here with libcrypto's one-shot HMAC. */
static void sign_bytes(const char *key_id, const char *secret,
                       const char *method, const char *path, int64_t ts,
                       const char *body, size_t body_len, char *headers,
                       size_t size) {
        size_t n = body_len + 256, head, i;
        char *text = malloc(n), hex[65];
        unsigned char mac[32];
        unsigned int mac_len = 0;

        head = (size_t)snprintf(text, n, "%s\n%s\n%lld\n", method, path,
                                (long long)ts);
        memcpy(text + head, body, body_len);
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)text,
             head + body_len, mac, &mac_len);
        cr_assert_eq(mac_len, 32);
        for (i = 0; i < 32; i++)
                sprintf(hex + 2 * i, "%02x", mac[i]);
        snprintf(headers, size,
                 "X-Ordo-Key: %s\r\nX-Ordo-Timestamp: %lld\r\n"
                 "X-Ordo-Signature: %s\r\n",
                 key_id, (long long)ts, hex);
        free(text);
}

static void sign(const char *key_id, const char *secret, const char *method,
                 const char *path, int64_t ts, const char *body, char *headers,
                 size_t size) {
        sign_bytes(key_id, secret, method, path, ts, body, strlen(body),
                   headers, size);
}

static resp_t post_as(const char *key_id, const char *secret, const char *path,
                      const char *body, int64_t ts) {
        char headers[512];
        sign(key_id, secret, "POST", path, ts, body, headers, sizeof(headers));
        return http(ordo_ingest_port(gw), "POST", path, headers, body,
                    strlen(body));
}

static resp_t post(const char *path, const char *body) {
        return post_as(KEY_ID, SECRET, path, body, wall_ms());
}

/* post, for a body that holds NUL bytes */
static resp_t post_bytes(const char *path, const char *body, size_t len) {
        char headers[512];
        sign_bytes(KEY_ID, SECRET, "POST", path, wall_ms(), body, len, headers,
                   sizeof(headers));
        return http(ordo_ingest_port(gw), "POST", path, headers, body, len);
}

/* The string value of "key" in a flat JSON answer, or "" (enough for the
 * answers here: ids and codes without escapes). */
static const char *json_str(const char *json, const char *key, char *out,
                            size_t size) {
        char pat[64];
        const char *p, *e;
        snprintf(pat, sizeof(pat), "\"%s\":\"", key);
        out[0] = '\0';
        if (!(p = strstr(json, pat)))
                return out;
        p += strlen(pat);
        e = strchr(p, '"');
        snprintf(out, size, "%.*s", (int)(e ? e - p : 0), p);
        return out;
}

static int has_header(const resp_t *r, const char *line) {
        return strcasestr(r->head, line) != NULL;
}

/* ---- reading the topic back ------------------------------------------- */

/* Every message of a command topic, decoded; returns how many (at most
 * max). */
static size_t read_topic(ordo_topic_t t, ordo_msg_t *out, size_t max) {
        char topic[256], err[512];
        rd_kafka_t *rk =
            ordo_kafka_consumer_new(conf, NULL, NULL, NULL, err, sizeof(err));
        rd_kafka_topic_partition_list_t *parts;
        ordo_codec_t *codec = ordo_codec_new(err, sizeof(err));
        int n_parts, p, eofs = 0;
        size_t n = 0;
        int64_t deadline = wall_ms() + 20000;

        cr_assert(rk && codec, "%s", err);
        ordo_topic_name(conf, t, topic, sizeof(topic));
        n_parts = ordo_kafka_partitions(rk, topic, err, sizeof(err));
        cr_assert_gt(n_parts, 0, "%s", err);
        parts = rd_kafka_topic_partition_list_new(n_parts);
        for (p = 0; p < n_parts; p++)
                rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        cr_assert_eq(rd_kafka_assign(rk, parts), 0);
        rd_kafka_topic_partition_list_destroy(parts);
        while (eofs < n_parts && wall_ms() < deadline) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        eofs++;
                else if (!m->err && n < max) {
                        cr_assert_eq(ordo_codec_decode(codec, m->payload,
                                                       m->len, &out[n], err,
                                                       sizeof(err)),
                                     0, "%s", err);
                        n++;
                }
                rd_kafka_message_destroy(m);
        }
        cr_assert_eq(eofs, n_parts, "topic %s not read to its end", topic);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        ordo_codec_destroy(codec);
        return n;
}

static const ordo_msg_t *find(const ordo_msg_t *msgs, size_t n,
                              const char *command_id) {
        size_t i;
        for (i = 0; i < n; i++)
                if (!strcmp(msgs[i].meta.id, command_id))
                        return &msgs[i];
        return NULL;
}

static const char *ok_body = "{\"type\":\"ConfirmReceipt\",\"order_id\":"
                             "\"o1\"}";

#define MAX_MSGS 64
static ordo_msg_t msgs[MAX_MSGS];

/* ---- accepted ---------------------------------------------------------- */

TestSuite(ingest, .init = setup, .fini = stop, .timeout = 120);

/* 202 only once Kafka has the command; the gateway generates command_id
 * and order_id and stamps ts_ms with its own clock (RULES.md "Units"). */
Test(ingest, accepted_is_on_the_topic) {
        const char *body = "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                           "\"user_id\":\"u1\",\"qty\":2}";
        int64_t before = wall_ms(), after;
        resp_t r = post("/v1/commands", body);
        char cid[128], oid[128];
        const ordo_msg_t *m;
        size_t n;

        after = wall_ms();
        cr_assert_eq(r.status, 202, "%s", r.body);
        json_str(r.body, "command_id", cid, sizeof(cid));
        json_str(r.body, "order_id", oid, sizeof(oid));
        cr_assert(cid[0] && oid[0], "%s", r.body);
        n = read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS);
        m = find(msgs, n, cid);
        cr_assert(m, "command %s not on activity-commands", cid);
        cr_assert_eq(m->type, ORDO_MSG_PLACE_ORDER);
        cr_assert_str_eq(m->u.place.order_id, oid);
        cr_assert_str_eq(m->u.place.activity_id, "a1");
        cr_assert_str_eq(m->u.place.user_id, "u1");
        cr_assert_eq(m->u.place.qty, 2);
        cr_assert(m->meta.ts_ms >= before && m->meta.ts_ms <= after,
                  "ts_ms %lld not stamped by the gateway",
                  (long long)m->meta.ts_ms);
        resp_free(&r);
}

/* A client's own order_id and command_id are kept and echoed. */
Test(ingest, client_ids_are_kept) {
        const char *body = "{\"type\":\"PlaceOrder\",\"order_id\":\"my-o-1\","
                           "\"command_id\":\"my-c-1\",\"activity_id\":\"a1\","
                           "\"user_id\":\"u2\",\"qty\":1}";
        resp_t r = post("/v1/commands", body);
        char v[128];
        cr_assert_eq(r.status, 202, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "command_id", v, sizeof(v)),
                         "my-c-1");
        cr_assert_str_eq(json_str(r.body, "order_id", v, sizeof(v)), "my-o-1");
        resp_free(&r);
}

/* A batch: per-line results, each line routed to its own topic. */
Test(ingest, batch_accepted) {
        const char *body =
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u3\",\"qty\":1}\n"
            "\n"
            "{\"type\":\"CancelOrder\",\"order_id\":\"o9\",\"user_id\":"
            "\"u3\",\"command_id\":\"cancel-1\"}\r\n";
        resp_t r = post("/v1/commands:batch", body);
        size_t n;
        cr_assert_eq(r.status, 202, "%s", r.body);
        cr_assert(strstr(r.body, "\"accepted\":2"), "%s", r.body);
        cr_assert(strstr(r.body, "\"line\":1"), "%s", r.body);
        cr_assert(strstr(r.body, "\"line\":3"), "blank lines count: %s",
                  r.body);
        n = read_topic(ORDO_TOPIC_ORDER_COMMANDS, msgs, MAX_MSGS);
        cr_assert(find(msgs, n, "cancel-1"),
                  "CancelOrder not on order-commands");
        resp_free(&r);
}

/* ts_ms: refused from an ordinary key, kept from a key trusted for batch
 * use (RULES.md "Units"; docs/command-contract.md "ts_ms policy"). */
Test(ingest, ts_ms_only_from_a_trusted_key) {
        const char *body = "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                           "\"user_id\":\"u4\",\"qty\":1,"
                           "\"ts_ms\":1600000000000,\"command_id\":\"t1\"}";
        resp_t r = post("/v1/commands", body);
        char v[64];
        size_t n;
        const ordo_msg_t *m;

        cr_assert_eq(r.status, 400, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "ts_ms");
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "NOT_ALLOWED");
        resp_free(&r);
        r = post_as(BATCH_ID, BATCH_SECRET, "/v1/commands:batch", body,
                    wall_ms());
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        n = read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS);
        m = find(msgs, n, "t1");
        cr_assert(m);
        cr_assert_eq(m->meta.ts_ms, 1600000000000LL);
}

/* ---- refused ----------------------------------------------------------- */

Test(ingest, refused_names_field_and_reason) {
        resp_t r = post("/v1/commands",
                        "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                        "\"user_id\":\"u1\",\"qty\":\"2\"}");
        char v[64];
        cr_assert_eq(r.status, 400, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "qty");
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "WRONG_TYPE");
        cr_assert(strstr(r.body, "\"error\":\""), "%s", r.body);
        resp_free(&r);
}

/* A Tick is refused for its type, also as a replay line with its
 * "partition" (an outside audit: that field was named UNKNOWN_FIELD). */
Test(ingest, a_tick_is_refused_for_its_type) {
        static const char *const ticks[] = {
                "{\"type\":\"Tick\"}",
                "{\"type\":\"Tick\",\"partition\":0}",
        };
        char v[64];
        size_t i;
        for (i = 0; i < 2; i++) {
                resp_t r = post("/v1/commands", ticks[i]);
                cr_assert_eq(r.status, 400, "%s", r.body);
                cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                                 "INTERNAL_TYPE", "%s: %s", ticks[i], r.body);
                resp_free(&r);
        }
}

/* All or nothing: one bad line refuses the batch, every bad line is
 * listed, and the good lines are not sent. */
Test(ingest, batch_refused_sends_nothing) {
        const char *body =
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u5\",\"qty\":1,\"command_id\":\"never-1\"}\n"
            "{\"type\":\"Foo\"}\n"
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u5\",\"qty\":1,\"command_id\":\"never-2\"}\n"
            "{\"type\":\"CancelOrder\",\"user_id\":\"u5\"}\n";
        resp_t r = post("/v1/commands:batch", body);
        size_t n;
        cr_assert_eq(r.status, 400, "%s", r.body);
        cr_assert(strstr(r.body, "{\"line\":2,"), "%s", r.body);
        cr_assert(strstr(r.body, "\"reason\":\"UNKNOWN_TYPE\""), "%s", r.body);
        cr_assert(strstr(r.body, "{\"line\":4,"), "%s", r.body);
        cr_assert(strstr(r.body, "\"field\":\"order_id\""), "%s", r.body);
        cr_assert(strstr(r.body, "\"reason\":\"MISSING\""), "%s", r.body);
        resp_free(&r);
        n = read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS);
        cr_assert_null(find(msgs, n, "never-1"));
        cr_assert_null(find(msgs, n, "never-2"));
}

/* A line of NUL bytes is not blank (JSON's whitespace is four bytes):
 * the batch is refused, naming the line, as `ordo produce` refuses it. */
Test(ingest, batch_line_of_nul_bytes_is_refused) {
        static const char body[] =
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u6\",\"qty\":1,\"command_id\":\"nul-1\"}\n"
            "\0\0\0\n";
        resp_t r = post_bytes("/v1/commands:batch", body, sizeof(body) - 1);
        size_t n;
        cr_assert_eq(r.status, 400, "%s", r.body);
        cr_assert(strstr(r.body, "{\"line\":2,"), "%s", r.body);
        cr_assert(strstr(r.body, "\"reason\":\"NOT_JSON\""), "%s", r.body);
        resp_free(&r);
        n = read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS);
        cr_assert_null(find(msgs, n, "nul-1"));
}

Test(ingest, wrong_path_and_method) {
        int port = ordo_ingest_port(gw);
        char v[64];
        resp_t r = http(port, "POST", "/v1/nope", "", "{}", 2);
        cr_assert_eq(r.status, 404);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)), "NOT_FOUND");
        /* No header at fault: the body names none. */
        cr_assert_null(strstr(r.body, "\"field\""), "%s", r.body);
        resp_free(&r);
        r = http(port, "GET", "/v1/commands", "", "", 0);
        cr_assert_eq(r.status, 405);
        cr_assert(has_header(&r, "Allow: POST"), "%s", r.head);
        resp_free(&r);
        /* a NUL in the path is no path of ours (decoded, it ended the
         * path early: routed as /v1/commands, signed as sent) */
        {
                char headers[512];
                sign(KEY_ID, SECRET, "POST", "/v1/commands%00x", wall_ms(),
                     ok_body, headers, sizeof(headers));
                r = http(port, "POST", "/v1/commands%00x", headers, ok_body,
                         strlen(ok_body));
                cr_assert_eq(r.status, 404, "%s", r.body);
                resp_free(&r);
        }
}

/* A web page's POST (a browser adds Origin) is refused, even with
 * authentication off, where a page anywhere could otherwise send
 * commands; the same request from a server is taken. */
static void setup_open(void) {
        static const char *const extra[] = { "ingest.keys.file=", NULL };
        start(extra);
}

Test(ingest, a_web_page_cannot_post, .init = setup_open) {
        const char *page =
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u7\",\"qty\":1,\"command_id\":\"from-a-page\"}";
        const char *server =
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u7\",\"qty\":1,\"command_id\":\"from-a-server\"}";
        int port = ordo_ingest_port(gw);
        char v[64];
        size_t n;
        resp_t r = http(port, "POST", "/v1/commands",
                        "Origin: http://shop.example\r\n", page, strlen(page));
        cr_assert_eq(r.status, 403, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "CROSS_ORIGIN");
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "Origin");
        resp_free(&r);
        r = http(port, "POST", "/v1/commands", "", server, strlen(server));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        n = read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS);
        cr_assert_not_null(find(msgs, n, "from-a-server"));
        cr_assert_null(find(msgs, n, "from-a-page"));
}

/* With authentication on, a signed request is an adapter's, whatever
 * proxy passed a browser's Origin on. */
Test(ingest, a_signed_request_may_carry_an_origin) {
        const char *body =
            "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\",\"user_id\":"
            "\"u8\",\"qty\":1,\"command_id\":\"signed-origin\"}";
        char headers[600];
        size_t n;
        resp_t r;
        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), body, headers,
             sizeof(headers));
        strcat(headers, "Origin: http://shop.example\r\n");
        r = http(ordo_ingest_port(gw), "POST", "/v1/commands", headers, body,
                 strlen(body));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        n = read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS);
        cr_assert_not_null(find(msgs, n, "signed-origin"));
}

/* ---- unauthorised, replayed -------------------------------------------- */

Test(ingest, unsigned_request_is_401) {
        resp_t r = http(ordo_ingest_port(gw), "POST", "/v1/commands", "",
                        ok_body, strlen(ok_body));
        char v[64];
        cr_assert_eq(r.status, 401, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "MISSING_AUTH");
        resp_free(&r);
}

Test(ingest, bad_signature_is_401) {
        char v[64];
        resp_t r = post_as(KEY_ID, "not-the-secret", "/v1/commands", ok_body,
                           wall_ms());
        cr_assert_eq(r.status, 401, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "BAD_SIGNATURE");
        resp_free(&r);
        r = post_as("no-such-key", SECRET, "/v1/commands", ok_body, wall_ms());
        cr_assert_eq(r.status, 401, "%s", r.body);
        resp_free(&r);
}

/* Default window 300000 ms: a timestamp 301 s old or ahead is refused. */
Test(ingest, stale_timestamp_is_401) {
        char v[64];
        resp_t r = post_as(KEY_ID, SECRET, "/v1/commands", ok_body,
                           wall_ms() - 301000);
        cr_assert_eq(r.status, 401, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "STALE_TIMESTAMP");
        resp_free(&r);
        r = post_as(KEY_ID, SECRET, "/v1/commands", ok_body,
                    wall_ms() + 301000);
        cr_assert_eq(r.status, 401, "%s", r.body);
        resp_free(&r);
}

Test(ingest, replayed_signature_is_401) {
        char headers[512], v[64];
        int port = ordo_ingest_port(gw);
        resp_t r;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), ok_body,
             headers, sizeof(headers));
        r = http(port, "POST", "/v1/commands", headers, ok_body,
                 strlen(ok_body));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        r = http(port, "POST", "/v1/commands", headers, ok_body,
                 strlen(ok_body));
        cr_assert_eq(r.status, 401, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)), "REPLAYED");
        resp_free(&r);
}

/* ---- rate limited, oversize -------------------------------------------- */

static void setup_tight(void) {
        static const char *const extra[] = { "ingest.rate.per.user=1",
                                             "ingest.rate.burst=2",
                                             "ingest.body.max=100000", NULL };
        start(extra);
}

/* burst 2, 1/s: the third PlaceOrder of one user at once is 429 with
 * Retry-After; another user is not affected. */
Test(ingest, rate_limited, .init = setup_tight) {
        const char *bot = "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                          "\"user_id\":\"bot\",\"qty\":1}";
        const char *human = "{\"type\":\"PlaceOrder\",\"activity_id\":"
                            "\"a1\",\"user_id\":\"human\",\"qty\":1}";
        const char *warm = "{\"type\":\"PlaceOrder\",\"activity_id\":"
                           "\"a1\",\"user_id\":\"warm\",\"qty\":1}";
        resp_t r;
        char v[64];
        int i;

        /* Warm the producer first (connection, metadata, producer id),
         * so the burst below takes milliseconds, not a refill's worth. */
        r = post("/v1/commands", warm);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        for (i = 0; i < 2; i++) {
                r = post("/v1/commands", bot);
                cr_assert_eq(r.status, 202, "%s", r.body);
                resp_free(&r);
        }
        r = post("/v1/commands", bot);
        cr_assert_eq(r.status, 429, "%s", r.body);
        cr_assert(has_header(&r, "Retry-After: 1"), "%s", r.head);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "RATE_LIMITED");
        resp_free(&r);
        r = post("/v1/commands", human);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

/* A batch over one bucket's burst: 400 OVER_BURST naming the limit. */
static void expect_over_burst(const char *batch, const char *field) {
        char v[64];
        resp_t r = post("/v1/commands:batch", batch);
        cr_assert_eq(r.status, 400, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "OVER_BURST");
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), field);
        resp_free(&r);
}

/* A batch with more PlaceOrders of one user than the burst (2) could
 * never pass: 400 OVER_BURST naming the limit, not a 429 that its client
 * would retry for ever; two of that user pass. */
Test(ingest, a_batch_over_the_burst_is_400, .init = setup_tight) {
        const char *line = "{\"type\":\"PlaceOrder\",\"activity_id\":"
                           "\"a1\",\"user_id\":\"greedy\",\"qty\":1}\n";
        char batch[512];
        resp_t r;

        snprintf(batch, sizeof(batch), "%s%s%s", line, line, line);
        expect_over_burst(batch, "user_id");
        snprintf(batch, sizeof(batch), "%s%s", line, line);
        r = post("/v1/commands:batch", batch);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

Test(ingest, oversize_is_413, .init = setup_tight) {
        size_t big = 150000, cmd = 70000;
        char *body = malloc(big + 1);
        char v[64];
        resp_t r;

        /* Over ingest.body.max (100000): refused on Content-Length. */
        memset(body, ' ', big);
        body[big] = '\0';
        r = http(ordo_ingest_port(gw), "POST", "/v1/commands", "", body, big);
        cr_assert_eq(r.status, 413, "%s", r.body);
        resp_free(&r);
        /* One command over 64 KiB (docs/command-contract.md TOO_LARGE). */
        memset(body, ' ', cmd);
        memcpy(body, "{\"type\":\"ConfirmReceipt\",\"order_id\":\"o1\"}", 41);
        body[cmd] = '\0';
        r = post("/v1/commands", body);
        cr_assert_eq(r.status, 413, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)), "TOO_LARGE");
        resp_free(&r);
        /* The same as a line of a batch: 413 too, and TOO_LARGE at the
         * top even after a line refused for another reason. */
        r = post("/v1/commands:batch", body);
        cr_assert_eq(r.status, 413, "%s", r.body);
        resp_free(&r);
        {
                const char *bad = "{\"type\":\"ConfirmReceipt\",\"order_id\""
                                  ":1}\n";
                char *batch = malloc(strlen(bad) + cmd + 1);
                strcpy(batch, bad);
                strcat(batch, body);
                r = post("/v1/commands:batch", batch);
                cr_assert_eq(r.status, 413, "%s", r.body);
                cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                                 "TOO_LARGE", "%s", r.body);
                resp_free(&r);
                free(batch);
        }
        /* 65,536 bytes and a line ending: the ending is not counted, as
         * `ordo produce` does not count it. */
        body[65536] = '\n';
        body[65537] = '\0';
        r = post("/v1/commands", body);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        free(body);
}

/* The gateway's /metrics has this line (name, labels and value) within
 * 5 s: an answer is counted in libmicrohttpd's completion callback, which
 * runs after the answer has gone out. */
static void expect_metric(const char *line) {
        int tries;
        for (tries = 0; tries < 50; tries++) {
                resp_t r =
                    http(ordo_ingest_port(gw), "GET", "/metrics", "", "", 0);
                int found = r.body && strstr(r.body, line) != NULL;
                if (found || tries == 49)
                        cr_assert(found, "no %s in\n%s", line, r.body);
                resp_free(&r);
                if (found)
                        return;
                usleep(100 * 1000);
        }
}

/* ---- health, metrics --------------------------------------------------- */

Test(ingest, healthz_and_metrics) {
        int port = ordo_ingest_port(gw);
        resp_t r = http(port, "GET", "/healthz", "", "", 0), a;

        cr_assert_eq(r.status, 200, "%s", r.body);
        resp_free(&r);
        a = post("/v1/commands", ok_body);
        cr_assert_eq(a.status, 202, "%s", a.body);
        resp_free(&a);
        expect_metric("ordo_ingest_requests_total{status=\"202\"} 1\n");
        r = http(port, "GET", "/metrics", "", "", 0);
        cr_assert_eq(r.status, 200);
        cr_assert(strstr(r.body,
                         "ordo_ingest_produce_seconds_bucket{le=\"+Inf\"} 1\n"),
                  "%s", r.body);
        cr_assert(strstr(r.body, "ordo_ingest_queue_depth "), "%s", r.body);
        resp_free(&r);
}

/* ---- back-pressure: a broker that is not there -------------------------- */

static void setup_dead_broker(void) {
        char err[512];
        static const char *const extra[] = {
                "kafka.bootstrap.servers=127.0.0.1:1", NULL
        };
        if (gw)
                stop();
        write_keys();
        conf = new_conf(extra);
        gw = ordo_ingest_new(conf, err, sizeof(err));
        cr_assert(gw, "%s", err);
}

/* The broker is unreachable: 503 with Retry-After within seconds
 * (kafka.message.timeout.ms defaults to 5000 in the gateway), never 202,
 * and /healthz says 503. */
Test(ingest, dead_broker_is_503, .init = setup_dead_broker) {
        resp_t r = post("/v1/commands", ok_body);
        cr_assert_eq(r.status, 503, "%s", r.body);
        cr_assert(has_header(&r, "Retry-After: "), "%s", r.head);
        cr_assert_lt(r.ms, 10000, "took %lld ms", (long long)r.ms);
        cr_assert(strstr(r.body, "\"command_id\":\""),
                  "the ids come back for a retry: %s", r.body);
        resp_free(&r);
        r = http(ordo_ingest_port(gw), "GET", "/healthz", "", "", 0);
        cr_assert_eq(r.status, 503, "%s", r.body);
        resp_free(&r);
}

/* /healthz needs no key, and an HTTP thread that waited for Kafka on it
 * held every connection it serves: each probe of an unreachable broker
 * cost a second. It answers from the watcher's last look instead. */
Test(ingest, healthz_never_waits_for_kafka, .init = setup_dead_broker) {
        long long total = 0;
        int i;
        for (i = 0; i < 6; i++) {
                resp_t r =
                    http(ordo_ingest_port(gw), "GET", "/healthz", "", "", 0);
                cr_assert_eq(r.status, 503, "%s", r.body);
                cr_assert(strstr(r.body, "\"unavailable\""), "%s", r.body);
                total += r.ms;
                resp_free(&r);
        }
        /* waiting, six probes took six seconds at least */
        cr_assert_lt(total, 3000, "six probes took %lld ms", total);
}

/* A full producer queue is 503 at once, not a wait. */
Test(ingest, queue_full_is_503, .init = setup_dead_broker) {
        const char *body = "{\"type\":\"ConfirmReceipt\",\"order_id\":\"o1\"}"
                           "\n{\"type\":\"ConfirmReceipt\",\"order_id\":"
                           "\"o2\"}\n";
        resp_t r;
        char err[256];

        /* Room for one message: the batch's second line cannot queue. */
        stop();
        write_keys();
        {
                static const char *const extra[] = {
                        "kafka.bootstrap.servers=127.0.0.1:1",
                        "kafka.queue.buffering.max.messages=1", NULL
                };
                conf = new_conf(extra);
        }
        gw = ordo_ingest_new(conf, err, sizeof(err));
        cr_assert(gw, "%s", err);
        r = post("/v1/commands:batch", body);
        cr_assert_eq(r.status, 503, "%s", r.body);
        cr_assert(has_header(&r, "Retry-After: "), "%s", r.head);
        cr_assert(strstr(r.body, "Queue full"), "%s", r.body);
        resp_free(&r);
        /* both count as failed: the one refused by the full queue too,
         * not only the one whose delivery report said so */
        r = http(ordo_ingest_port(gw), "GET", "/metrics", "", "", 0);
        cr_assert(strstr(r.body, "ordo_ingest_commands_total{result=\"failed\"}"
                                 " 2\n"),
                  "%s", r.body);
        resp_free(&r);
}

/* ---- the door (issue 14 item 2) ----------------------------------------- */

/* A connection from the loopback address src (all of 127/8 is local, so
 * tests can be several peers). */
static int connect_from(const char *src, int port) {
        struct sockaddr_in sa, from;
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        from = sa;
        from.sin_port = 0;
        inet_pton(AF_INET, src, &from.sin_addr);
        cr_assert(fd >= 0);
        cr_assert_eq(bind(fd, (struct sockaddr *)&from, sizeof(from)), 0);
        cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        return fd;
}

static int connect_to(int port) {
        return connect_from("127.0.0.1", port);
}

/* What arrives on fd within ms: the answer's text ("" if none, or if the
 * server closed without one). Returns -1 on timeout, else the bytes read. */
static ssize_t read_within(int fd, int ms, char *buf, size_t size) {
        size_t len = 0;
        int64_t end = wall_ms() + ms;

        buf[0] = '\0';
        while (len + 1 < size) {
                struct pollfd p = { fd, POLLIN, 0 };
                int64_t left = end - wall_ms();
                ssize_t n;
                if (left <= 0 || poll(&p, 1, (int)left) <= 0)
                        return len ? (ssize_t)len : -1;
                n = read(fd, buf + len, size - 1 - len);
                if (n <= 0)
                        break;
                len += (size_t)n;
                buf[len] = '\0';
        }
        return (ssize_t)len;
}

/* A new connection with a POST /v1/commands announcing length body bytes
 * and the given start of the body ("" for none) sent; returns it. */
static int open_post_from(const char *src, const char *headers, size_t length,
                          const char *body) {
        char req[2048];
        int fd = connect_from(src, ordo_ingest_port(gw));

        snprintf(req, sizeof(req),
                 "POST /v1/commands HTTP/1.1\r\nHost: x\r\n%s"
                 "Content-Length: %zu\r\n\r\n%s",
                 headers, length, body);
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
        return fd;
}

static int open_post(const char *headers, size_t length, const char *body) {
        return open_post_from("127.0.0.1", headers, length, body);
}

/* A whole signed POST of body from src; the answer's status. */
static int post_from(const char *src, const char *body, char *buf,
                     size_t size) {
        char headers[512];
        int fd;
        ssize_t n;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), body, headers,
             sizeof(headers));
        fd = open_post_from(src, headers, strlen(body), body);
        n = read_within(fd, 5000, buf, size);
        close(fd);
        cr_assert_gt(n, 12, "no answer");
        return atoi(buf + 9);
}

/* Sends only the headers of a POST announcing length body bytes, with
 * Expect: 100-continue, then waits up to 5 s for an answer that must
 * come before any body byte. */
static int headers_only(const char *headers, size_t length, char *buf,
                        size_t size) {
        char h[1024];
        int fd;
        ssize_t n;

        snprintf(h, sizeof(h), "%sExpect: 100-continue\r\n", headers);
        fd = open_post(h, length, "");
        n = read_within(fd, 5000, buf, size);
        close(fd);
        cr_assert_gt(n, 12, "no answer before the body");
        return atoi(buf + 9);
}

static void setup_short_window(void) {
        static const char *const extra[] = { "ingest.signature.window.ms=6000",
                                             "ingest.body.timeout.ms=6000",
                                             NULL };
        start(extra);
}

static void sleep_until(int64_t t) {
        int64_t left = t - wall_ms();
        if (left > 0)
                usleep((useconds_t)left * 1000);
}

/* A copy whose headers pass the door near the end of the window and whose
 * body comes after it: the signature is still remembered then (it was
 * forgotten at the window's end, and the copy made a second command). */
Test(ingest, a_copy_with_a_late_body_is_replayed, .init = setup_short_window) {
        char headers[512], buf[4096], v[64];
        int64_t ts = wall_ms();
        resp_t r;
        int fd;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", ts, ok_body, headers,
             sizeof(headers));
        r = http(ordo_ingest_port(gw), "POST", "/v1/commands", headers, ok_body,
                 strlen(ok_body));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        /* (the first 202 waits for Kafka: 4 s leave it room) */
        sleep_until(ts + 4000);
        fd = open_post(headers, strlen(ok_body), "");
        sleep_until(ts + 6600); /* past the window */
        cr_assert_eq(write(fd, ok_body, strlen(ok_body)),
                     (ssize_t)strlen(ok_body));
        cr_assert_gt(read_within(fd, 5000, buf, sizeof(buf)), 12);
        close(fd);
        cr_assert_eq(atoi(buf + 9), 401, "%s", buf);
        cr_assert_str_eq(
            json_str(strstr(buf, "\r\n\r\n"), "reason", v, sizeof(v)),
            "REPLAYED");
}

/* An unknown key, a stale time or a missing signature is refused on the
 * headers: the answer comes while the body has not been sent. */
Test(ingest, refused_before_the_body) {
        char headers[512], buf[4096];

        sign("no-such-key", SECRET, "POST", "/v1/commands", wall_ms(), "",
             headers, sizeof(headers));
        cr_assert_eq(headers_only(headers, 50000, buf, sizeof(buf)), 401, "%s",
                     buf);
        cr_assert(strstr(buf, "\"UNKNOWN_KEY\""), "%s", buf);
        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms() - 400000, "",
             headers, sizeof(headers));
        cr_assert_eq(headers_only(headers, 50000, buf, sizeof(buf)), 401, "%s",
                     buf);
        cr_assert(strstr(buf, "\"STALE_TIMESTAMP\""), "%s", buf);
        cr_assert_eq(headers_only("", 50000, buf, sizeof(buf)), 401, "%s", buf);
        cr_assert(strstr(buf, "\"MISSING_AUTH\""), "%s", buf);
        cr_assert_eq(headers_only("", 5000000, buf, sizeof(buf)), 413, "%s",
                     buf);
}

/* One request on a new connection, written whole (head, then body_len
 * bytes of body) before anything is read, as many HTTP stacks do; its
 * answer (within 5 s) into buf. The answer's status, 0 if none came. */
static int exchange(const char *head, const char *body, size_t body_len,
                    char *buf, size_t size) {
        int fd = connect_from("127.0.0.1", ordo_ingest_port(gw));
        size_t i;
        ssize_t n;

        signal(SIGPIPE, SIG_IGN); /* a reset is a failed write */
        cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
        for (i = 0; i < body_len;) {
                ssize_t w = write(fd, body + i, body_len - i);
                cr_assert_gt(w, 0, "the body could not be sent: %s",
                             strerror(errno));
                i += (size_t)w;
        }
        n = read_within(fd, 5000, buf, size);
        close(fd);
        return n > 12 ? atoi(buf + 9) : 0;
}

/* A client that writes its whole body before it reads (as many HTTP
 * stacks do) reads the refusal too: the gateway reads and drops the body
 * first; closing on it unread reset the connection under the client. */
Test(ingest, a_refused_body_is_read_before_the_answer) {
        static char body[(1 << 20) + 1]; /* ingest.body.max + 1 */
        static const struct {
                size_t len;
                int status;
        } cases[] = { { 50000, 401 }, { sizeof(body), 413 } };
        char head[256], buf[4096];
        size_t k;

        memset(body, ' ', sizeof(body));
        for (k = 0; k < 2; k++) {
                snprintf(head, sizeof(head),
                         "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: %zu\r\n\r\n",
                         cases[k].len);
                cr_assert_eq(
                    exchange(head, body, cases[k].len, buf, sizeof(buf)),
                    cases[k].status, "%s", buf);
        }
}

/* libmicrohttpd answers a Content-Length it cannot read itself, before
 * ordo sees the request: still counted, as status="library". */
Test(ingest, the_library_s_own_answers_are_counted) {
        char buf[4096];

        cr_assert_eq(exchange("POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: -1\r\n\r\n",
                              "", 0, buf, sizeof(buf)),
                     400, "%s", buf);
        expect_metric("ordo_ingest_requests_total{status=\"library\"} 1\n");
}

/* A transfer coding the gateway cannot read is refused at once (it used
 * to wait for the body's deadline with no answer), a compressed body
 * with 415, whichever Content-Encoding header names the coding; HEAD is
 * served as GET. */
Test(ingest, an_unknown_coding_and_head) {
        static const struct {
                const char *req;
                int status;
        } cases[] = {
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: gzip\r\n\r\n",
                  501 },
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}",
                  415 },
                /* every Content-Encoding is read, each a list (an
                 * outside audit: identity, then gzip, was taken) */
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Content-Encoding: identity\r\nContent-Encoding: gzip\r\n"
                  "Content-Length: 2\r\n\r\n{}",
                  415 },
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Content-Encoding: identity, gzip\r\n"
                  "Content-Length: 2\r\n\r\n{}",
                  415 },
                /* an empty header names no coding (it was 415) */
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Content-Encoding:\r\nContent-Length: 2\r\n\r\n{}",
                  401 },
                /* identity, or none named: on to the key check */
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Content-Encoding: Identity\r\nContent-Encoding:\r\n"
                  "Content-Length: 2\r\n\r\n{}",
                  401 },
                /* two codings: a proxy may join them (chunked, gzip) */
                { "POST /v1/commands HTTP/1.1\r\nHost: x\r\n"
                  "Transfer-Encoding: chunked\r\n"
                  "Transfer-Encoding: gzip\r\n\r\n",
                  400 },
                { "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200 },
        };
        char buf[4096];
        size_t k;

        for (k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
                cr_assert_eq(exchange(cases[k].req, "", 0, buf, sizeof(buf)),
                             cases[k].status, "%s: %s", cases[k].req, buf);
        cr_assert(strstr(buf, "\r\n\r\n") && !strstr(buf, "\r\n\r\n")[4],
                  "HEAD has no body: %s", buf);
}

/* Two lengths for one body, which a proxy in front may read otherwise
 * than the gateway (request smuggling): refused on the headers. */
Test(ingest, an_ambiguous_length_is_refused) {
        char buf[4096];
        cr_assert_eq(
            headers_only("Content-Length: 5\r\n", 50, buf, sizeof(buf)), 400,
            "%s", buf);
        cr_assert(strstr(buf, "\"AMBIGUOUS_LENGTH\""), "%s", buf);
        cr_assert(strstr(buf, "\"field\":\"Content-Length\""), "%s", buf);
        cr_assert_eq(headers_only("Transfer-Encoding: chunked\r\n", 50, buf,
                                  sizeof(buf)),
                     400, "%s", buf);
        cr_assert(strstr(buf, "\"AMBIGUOUS_LENGTH\""), "%s", buf);
}

static void setup_door(void) {
        static const char *const extra[] = { "ingest.body.max=100000",
                                             "ingest.unauth.bytes.max=150000",
                                             "ingest.body.timeout.ms=1500",
                                             "ingest.peer.connections.max=4",
                                             NULL };
        start(extra);
}

/* One deadline for the whole body: a byte every 200 ms (each renewing an
 * idle timeout) does not keep the request past ingest.body.timeout.ms;
 * the request is counted under status="timeout". */
Test(ingest, body_deadline_is_not_renewed_by_bytes, .init = setup_door) {
        char headers[512], buf[4096];
        int fd, i, closed = 0;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), "x", headers,
             sizeof(headers));
        fd = open_post(headers, 1000, "");
        /* 1000 bytes at 5 a second would take 200 s; give it 8. */
        for (i = 0; i < 40 && !closed; i++) {
                if (write(fd, " ", 1) != 1 ||
                    read_within(fd, 200, buf, sizeof(buf)) >= 0)
                        closed = 1;
        }
        close(fd);
        cr_assert(closed, "still open after 8 s of trickle");
        cr_assert_lt(i, 40);
        expect_metric("ordo_ingest_requests_total{status=\"timeout\"} 1\n");
}

/* /healthz and /metrics take GET and HEAD; another method's body is read
 * before the 405, as on the command paths. */
Test(ingest, a_post_to_healthz_reads_its_body) {
        static char body[1 << 20];
        char head[256], buf[4096];

        memset(body, ' ', sizeof(body));
        snprintf(head, sizeof(head),
                 "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 "%zu\r\n\r\n",
                 sizeof(body));
        cr_assert_eq(exchange(head, body, sizeof(body), buf, sizeof(buf)), 405,
                     "%s", buf);
}

/* ingest.peer.connections.max=4: a fifth connection from one address is
 * closed at once; when one closes, a new one is served. */
Test(ingest, connections_per_peer_are_capped, .init = setup_door) {
        int port = ordo_ingest_port(gw), fds[4], fd, i;
        char buf[256];
        resp_t r;

        for (i = 0; i < 4; i++)
                fds[i] = connect_to(port);
        usleep(1000000); /* the gateway accepts them (no signal says so) */
        fd = connect_to(port);
        cr_assert_eq(read_within(fd, 3000, buf, sizeof(buf)), 0,
                     "the fifth connection was not closed");
        close(fd);
        close(fds[0]);
        /* served again once the gateway has seen the close (a connection
         * tried before is closed unanswered: http() fails on it) */
        usleep(1000000);
        r = http(port, "GET", "/healthz", "", "", 0);
        cr_assert_neq(r.status, 0);
        resp_free(&r);
        for (i = 1; i < 4; i++)
                close(fds[i]);
}

/* setup_door's limits with a body deadline far from the held body's
 * second of waiting (1.5 s gave its bytes back half a second later). */
static void setup_door_patient(void) {
        static const char *const extra[] = { "ingest.body.max=100000",
                                             "ingest.unauth.bytes.max=150000",
                                             "ingest.body.timeout.ms=10000",
                                             NULL };
        start(extra);
}

/* ingest.unauth.bytes.max=150000: a body announced while 100000 bytes of
 * another unauthenticated one are held is 503 BUSY on its headers. */
Test(ingest, unauthenticated_bytes_are_bounded, .init = setup_door_patient) {
        char headers[512], buf[4096];
        int fd, i;
        resp_t r;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), "x", headers,
             sizeof(headers));
        fd = open_post(headers, 100000, "");
        usleep(1000000); /* the gateway holds its bytes (no signal says so) */
        cr_assert_eq(headers_only(headers, 60000, buf, sizeof(buf)), 503, "%s",
                     buf);
        cr_assert(strstr(buf, "\"BUSY\""), "%s", buf);
        close(fd); /* its bytes leave the budget once the gateway sees it */
        for (i = 0;; i++) {
                r = post("/v1/commands", ok_body);
                if (r.status == 202 || i == 50)
                        break;
                resp_free(&r);
                usleep(100000);
        }
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

static void setup_peer_share(void) {
        static const char *const extra[] = {
                "ingest.body.max=100000", "ingest.unauth.bytes.max=300000",
                "ingest.unauth.peer.bytes.max=100000", NULL
        };
        start(extra);
}

/* ingest.unauth.peer.bytes.max=100000: while one address holds 100000
 * unauthenticated bytes, its next body is 503 BUSY naming the per-address
 * limit, and another address is served; closing frees the share. */
Test(ingest, unauthenticated_bytes_are_bounded_per_address,
     .init = setup_peer_share) {
        char headers[512], buf[4096];
        int fd, i;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), "x", headers,
             sizeof(headers));
        fd = open_post_from("127.0.0.1", headers, 100000, "");
        usleep(1000000); /* the gateway holds its bytes (no signal says so) */
        cr_assert_eq(post_from("127.0.0.1", ok_body, buf, sizeof(buf)), 503,
                     "%s", buf);
        cr_assert(strstr(buf, "\"BUSY\""), "%s", buf);
        cr_assert(strstr(buf, "ingest.unauth.peer.bytes.max"), "%s", buf);
        cr_assert_eq(post_from("127.0.0.2", ok_body, buf, sizeof(buf)), 202,
                     "another address: %s", buf);
        close(fd); /* its bytes leave the budget once the gateway sees it */
        for (i = 0;
             i < 50 && post_from("127.0.0.1", ok_body, buf, sizeof(buf)) != 202;
             i++)
                usleep(100000);
        cr_assert_lt(i, 50, "%s", buf);
}

/* A share smaller than the largest body could never take one. */
Test(ingest, a_peer_share_below_the_body_max_is_refused) {
        static const char *const extra[] = {
                "ingest.body.max=100000", "ingest.unauth.peer.bytes.max=99999",
                NULL
        };
        char err[512] = "";
        stop();
        write_keys();
        conf = new_conf(extra);
        gw = ordo_ingest_new(conf, err, sizeof(err));
        cr_assert_null(gw);
        cr_assert(strstr(err, "ingest.unauth.peer.bytes.max"), "%s", err);
}

/* ---- key scopes (issue 14 item 3) --------------------------------------- */

/* A payment key may confirm payments and refund, nothing else; a shop
 * front end may not confirm a payment. 403 names the type and scope, and
 * a batch with one such line sends nothing. */
Test(ingest, scopes_refuse_other_types) {
        const char *place = "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                            "\"user_id\":\"u1\",\"qty\":1}";
        const char *pay = "{\"type\":\"ConfirmPayment\",\"order_id\":\"o1\","
                          "\"payment_id\":\"p1\",\"amount_cents\":100}";
        char batch[512], v[128];
        resp_t r;

        r = post_as(PAY_ID, PAY_SECRET, "/v1/commands", place, wall_ms());
        cr_assert_eq(r.status, 403, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "FORBIDDEN_TYPE");
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "type");
        cr_assert(strstr(r.body, "ConfirmPayment,RefundOrder"), "%s", r.body);
        resp_free(&r);
        r = post_as(FRONT_ID, FRONT_SECRET, "/v1/commands", pay, wall_ms());
        cr_assert_eq(r.status, 403, "%s", r.body);
        resp_free(&r);
        snprintf(batch, sizeof(batch), "%s\n%s\n", place, pay);
        r = post_as(FRONT_ID, FRONT_SECRET, "/v1/commands:batch", batch,
                    wall_ms());
        cr_assert_eq(r.status, 403, "%s", r.body);
        cr_assert(strstr(r.body, "\"line\":2"), "%s", r.body);
        resp_free(&r);
        cr_assert_eq(read_topic(ORDO_TOPIC_ACTIVITY_COMMANDS, msgs, MAX_MSGS),
                     0, "a refused batch sent its PlaceOrder");
        r = post_as(PAY_ID, PAY_SECRET, "/v1/commands", pay, wall_ms());
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        r = post_as(FRONT_ID, FRONT_SECRET, "/v1/commands", place, wall_ms());
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

/* ---- limits a client cannot choose (issue 14 item 4) -------------------- */

static const char *place_for(const char *user, char *out, size_t size) {
        snprintf(out, size,
                 "{\"type\":\"PlaceOrder\",\"activity_id\":\"a1\","
                 "\"user_id\":\"%s\",\"qty\":1}",
                 user);
        return out;
}

static void setup_key_limit(void) {
        static const char *const extra[] = { "ingest.rate.per.user=0",
                                             "ingest.rate.per.key=1",
                                             "ingest.rate.key.burst=3", NULL };
        start(extra);
}

/* n PlaceOrders, one line each, with user_ids tag0, tag1, ... */
static const char *places(const char *tag, int n, char *out, size_t size) {
        char one[256], user[32];
        size_t len = 0;
        int i;

        out[0] = '\0';
        for (i = 0; i < n; i++) {
                snprintf(user, sizeof(user), "%s%d", tag, i);
                place_for(user, one, sizeof(one));
                len += (size_t)snprintf(out + len, size - len, "%s\n", one);
        }
        return out;
}

/* In one request, so no refill can come between: a new user_id per line
 * does not get past the key's limit (burst 3), another key has its own
 * bucket, and the refused batch spent nothing. A batch over the burst
 * could never pass: 400 OVER_BURST. */
Test(ingest, limit_by_key, .init = setup_key_limit) {
        char body[2048], v[64];
        resp_t r;

        expect_over_burst(places("o", 4, body, sizeof(body)), "X-Ordo-Key");
        r = post("/v1/commands:batch", places("u", 2, body, sizeof(body)));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        r = post("/v1/commands:batch", places("v", 2, body, sizeof(body)));
        cr_assert_eq(r.status, 429, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "X-Ordo-Key");
        cr_assert(strstr(r.body, "\"lines\":[2]"), "%s", r.body);
        resp_free(&r);
        r = post_as(FRONT_ID, FRONT_SECRET, "/v1/commands:batch",
                    places("f", 3, body, sizeof(body)), wall_ms());
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        r = post("/v1/commands:batch", places("w", 1, body, sizeof(body)));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

static void setup_peer_limit(void) {
        static const char *const extra[] = { "ingest.rate.per.user=0",
                                             "ingest.rate.per.peer=1",
                                             "ingest.rate.peer.burst=2", NULL };
        start(extra);
}

/* Neither new user_ids nor another key get past the peer's limit. */
Test(ingest, limit_by_peer, .init = setup_peer_limit) {
        char body[2048], v[64];
        resp_t r;

        expect_over_burst(places("o", 3, body, sizeof(body)), "peer");
        r = post("/v1/commands:batch", places("u", 1, body, sizeof(body)));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        r = post_as(FRONT_ID, FRONT_SECRET, "/v1/commands:batch",
                    places("f", 2, body, sizeof(body)), wall_ms());
        cr_assert_eq(r.status, 429, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "peer");
        resp_free(&r);
        r = post_as(FRONT_ID, FRONT_SECRET, "/v1/commands:batch",
                    places("g", 1, body, sizeof(body)), wall_ms());
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

/* burst 2 per user: with one token of "bot" left, a batch with two
 * PlaceOrders of "bot" is 429 and spends nothing, so bot's single order
 * afterwards passes. */
Test(ingest, refused_batch_spends_nothing, .init = setup_tight) {
        char one[256], batch[1024], v[64];
        resp_t r;

        place_for("bot", one, sizeof(one));
        r = post("/v1/commands", one);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        snprintf(batch, sizeof(batch), "%s\n%s\n", one, one);
        r = post("/v1/commands:batch", batch);
        cr_assert_eq(r.status, 429, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "field", v, sizeof(v)), "user_id");
        cr_assert(strstr(r.body, "\"lines\":[2]"), "%s", r.body);
        resp_free(&r);
        r = post("/v1/commands", one);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
}

/* A deployment whose topics were never made (a wrong topic.prefix):
 * /healthz says so, and a refused command names its topic; both used to
 * read as a Kafka outage ("Message timed out", /healthz 200). */
Test(ingest, a_missing_topic_is_named) {
        static const char *const open_door[] = { "ingest.keys.file=", NULL };
        ordo_config_t *c = new_conf(open_door);
        char err[512], want[256];
        ordo_ingest_t *g = ordo_ingest_new(c, err, sizeof(err));
        resp_t r = { 0 };
        int64_t t0;
        int i;

        cr_assert(g, "%s", err);
        for (i = 0; i < 100; i++) {
                resp_free(&r);
                r = http(ordo_ingest_port(g), "GET", "/healthz", "", "", 0);
                if (r.status == 503)
                        break;
                usleep(100 * 1000);
        }
        snprintf(want, sizeof(want), "no topic %sactivity-commands in Kafka",
                 ordo_config_get(c, "topic.prefix"));
        cr_assert_eq(r.status, 503, "%s", r.body);
        cr_assert(strstr(r.body, want), "%s", r.body);
        resp_free(&r);
        t0 = wall_ms();
        r = http(ordo_ingest_port(g), "POST", "/v1/commands", "",
                 "{\"type\":\"ConfirmReceipt\",\"order_id\":\"o1\"}", 41);
        snprintf(want, sizeof(want), "no topic %sorder-commands in Kafka",
                 ordo_config_get(c, "topic.prefix"));
        cr_assert_eq(r.status, 503, "%s", r.body);
        cr_assert(strstr(r.body, want), "%s", r.body);
        /* at once, not after kafka.message.timeout.ms (5 s): nothing is
         * sent to a topic the gateway knows Kafka has not (an audit) */
        cr_assert_lt(wall_ms() - t0, 2500, "answered after %lld ms",
                     (long long)(wall_ms() - t0));
        resp_free(&r);
        ordo_ingest_destroy(g);
        ordo_config_destroy(c);
}

/* ---- issue 14 item 5, issue 13 item 5 ----------------------------------- */

/* The signature covers the path as sent: "/v1/comm%61nds" is routed as
 * /v1/commands but signed as sent; signed over the decoded path it is
 * refused. */
Test(ingest, path_as_sent_is_signed) {
        const char *raw = "/v1/comm%61nds";
        char headers[512], v[64];
        resp_t r;

        sign(KEY_ID, SECRET, "POST", raw, wall_ms(), ok_body, headers,
             sizeof(headers));
        r = http(ordo_ingest_port(gw), "POST", raw, headers, ok_body,
                 strlen(ok_body));
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms() + 1, ok_body,
             headers, sizeof(headers));
        r = http(ordo_ingest_port(gw), "POST", raw, headers, ok_body,
                 strlen(ok_body));
        cr_assert_eq(r.status, 401, "%s", r.body);
        cr_assert_str_eq(json_str(r.body, "reason", v, sizeof(v)),
                         "BAD_SIGNATURE");
        resp_free(&r);
}

/* A client that leaves while its request waits for Kafka is counted under
 * status="disconnected" (and not under the 503 it never got). */
Test(ingest, disconnected_while_waiting_is_counted, .init = setup_dead_broker) {
        char headers[512];
        struct linger off = { 1, 0 };
        int fd, found = 0;
        int64_t end;
        resp_t r;

        sign(KEY_ID, SECRET, "POST", "/v1/commands", wall_ms(), ok_body,
             headers, sizeof(headers));
        fd = open_post(headers, strlen(ok_body), ok_body);
        usleep(1000000); /* it is waiting for the (dead) broker */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
        close(fd); /* a reset, not a polite close */
        /* kafka.message.timeout.ms is 5000 in the gateway. */
        for (end = wall_ms() + 15000; !found && wall_ms() < end;) {
                usleep(250000);
                r = http(ordo_ingest_port(gw), "GET", "/metrics", "", "", 0);
                found = strstr(r.body, "ordo_ingest_requests_total{status="
                                       "\"disconnected\"} 1\n") != NULL;
                if (found)
                        cr_assert(strstr(r.body,
                                         "ordo_ingest_requests_total{status="
                                         "\"503\"} 0\n"),
                                  "%s", r.body);
                resp_free(&r);
        }
        cr_assert(found, "no disconnected request in /metrics");
}

/* Keys reload at once (SIGHUP calls ordo_ingest_reload_keys): a key
 * removed from the file is refused, a new one accepted; a bad file keeps
 * the keys as they were. */
Test(ingest, keys_reload) {
        char err[512];
        FILE *f = fopen(keys_path, "w");
        resp_t r;

        cr_assert(f);
        fprintf(f, "new-key new-secret scope=ConfirmReceipt\n");
        fclose(f);
        cr_assert_eq(ordo_ingest_reload_keys(gw, err, sizeof(err)), 0, "%s",
                     err);
        r = post("/v1/commands", ok_body);
        cr_assert_eq(r.status, 401, "the removed key still works: %s", r.body);
        cr_assert(strstr(r.body, "UNKNOWN_KEY"), "%s", r.body);
        resp_free(&r);
        r = post_as("new-key", "new-secret", "/v1/commands", ok_body,
                    wall_ms());
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
        f = fopen(keys_path, "w");
        fprintf(f, "new-key new-secret scope=NoSuchCommand\n");
        fclose(f);
        cr_assert_neq(ordo_ingest_reload_keys(gw, err, sizeof(err)), 0);
        cr_assert(strstr(err, "NoSuchCommand"), "%s", err);
        cr_assert_null(strstr(err, "new-secret"), "%s", err);
        r = post_as("new-key", "new-secret", "/v1/commands", ok_body,
                    wall_ms() + 1);
        cr_assert_eq(r.status, 202, "the old keys did not stay: %s", r.body);
        resp_free(&r);
}

/* One info line per refused request with status, reason, key and peer; a
 * flood is cut to the log's rate and the next line says how many lines
 * were left out. */
Test(ingest, refusals_are_logged_at_a_bounded_rate) {
        char path[64], line[1024], headers[512], buf[4096];
        int saved = dup(2), fd, i, lines = 0, first = 0, skipped = 0;
        int forged = 0, clean = 0;
        FILE *f;

        snprintf(path, sizeof(path), "/tmp/ordo-ingest-log-%d", (int)getpid());
        fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        cr_assert(fd >= 0 && saved >= 0);
        dup2(fd, 2);
        /* A key id cannot add fields to the line. */
        headers_only("X-Ordo-Key: x level=error msg=\"forged\"\r\n"
                     "X-Ordo-Timestamp: 1\r\nX-Ordo-Signature: 0\r\n",
                     10, buf, sizeof(buf));
        sign("intruder", SECRET, "POST", "/v1/commands", wall_ms(), "", headers,
             sizeof(headers));
        for (i = 0; i < 120; i++)
                headers_only(headers, 10, buf, sizeof(buf));
        usleep(300000); /* the log's bucket refills a little */
        headers_only(headers, 10, buf, sizeof(buf));
        dup2(saved, 2);
        close(saved);
        close(fd);
        f = fopen(path, "r");
        cr_assert(f);
        while (fgets(line, sizeof(line), f)) {
                if (!strstr(line, "msg=refused"))
                        continue;
                if (lines++ == 1)
                        first =
                            strstr(line, "status=401 reason=UNKNOWN_KEY "
                                         "key=intruder peer=127.0.0.1") != NULL;
                if (!strstr(line, "not_logged=0"))
                        skipped = 1;
                forged |= strstr(line, " level=error") != NULL;
                clean |=
                    strstr(line, "key=x?level=error?msg=?forged? ") != NULL;
        }
        fclose(f);
        unlink(path);
        cr_assert(clean && !forged, "a key id forged a log field");
        cr_assert(first, "the first line names status, reason, key, peer");
        cr_assert_lt(lines, 121, "every refusal of the flood was logged");
        cr_assert_geq(lines, 50);
        cr_assert(skipped, "no line says how many were left out");
}
