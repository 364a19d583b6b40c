/*
 * Unit: the pure steps of the C client (producers/client/ordo_client.h)
 * against fixed byte strings: the request it writes (headers and
 * signature as docs/command-contract.md "HTTP gateway", "Signatures" says)
 * and the answers it reads ("Answers": 202, 400, 429 and 503 with
 * Retry-After). No sockets.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "ordo_client.h"

#define BODY "{\"type\":\"ConfirmReceipt\",\"order_id\":\"o1\"}"

/* From the OpenSSL command line, not from ordo's code:
 * printf 'POST\n/v1/commands\n1700000000000\n%s' "$BODY" |
 *     openssl dgst -sha256 -hmac s3cret */
#define SIG "ac84a23620eb7730d87403143fe237282e4309b4e0174389dee35813889cf353"

static char err[256];

static char *request(const char *key_id, size_t *len) {
        char *r = ordo_client_request("gw.example", "/v1/commands", key_id,
                                      "s3cret", 1700000000000LL, BODY,
                                      strlen(BODY), len, err, sizeof(err));
        cr_assert(r, "%s", err);
        return r;
}

/* The head's line "name: value\r\n" is there exactly once. */
static void has_line(const char *req, const char *line) {
        const char *p = strstr(req, line);
        cr_assert(p, "no \"%s\" in:\n%s", line, req);
        cr_assert_null(strstr(p + 1, line), "twice: %s", line);
}

Test(client_request, signed_as_the_contract_says) {
        size_t len;
        char *req = request("shop-1", &len);
        const char *sep = strstr(req, "\r\n\r\n");

        cr_assert_eq(strncmp(req, "POST /v1/commands HTTP/1.1\r\n", 28), 0,
                     "%s", req);
        has_line(req, "\nHost: gw.example\r\n");
        has_line(req, "\nContent-Type: application/json\r\n");
        has_line(req, "\nX-Ordo-Key: shop-1\r\n");
        has_line(req, "\nX-Ordo-Timestamp: 1700000000000\r\n");
        has_line(req, "\nX-Ordo-Signature: " SIG "\r\n");
        cr_assert(sep);
        /* The body is the exact bytes signed, and Content-Length counts
         * them. */
        cr_assert_str_eq(sep + 4, BODY);
        cr_assert_eq(len, (size_t)(sep + 4 - req) + strlen(BODY));
        {
                char cl[64];
                snprintf(cl, sizeof(cl), "\nContent-Length: %zu\r\n",
                         strlen(BODY));
                has_line(req, cl);
        }
        free(req);
}

Test(client_request, no_key_no_auth_headers) {
        size_t len;
        char *req = request(NULL, &len);
        cr_assert_null(strstr(req, "X-Ordo-"), "%s", req);
        cr_assert_eq(len, strlen(req));
        free(req);
}

/* PlaceOrder: contract section "PlaceOrder"; an absent order_id lets the
 * gateway generate one, so NULL must leave the key out (not send ""). */
Test(client_request, place_order_json) {
        char *s = ordo_client_place_order_json(NULL, "a1", "u1", 3);
        json_t *o = json_loads(s, 0, NULL);
        cr_assert(o, "%s", s);
        cr_assert_str_eq(json_string_value(json_object_get(o, "type")),
                         "PlaceOrder");
        cr_assert_str_eq(json_string_value(json_object_get(o, "activity_id")),
                         "a1");
        cr_assert_str_eq(json_string_value(json_object_get(o, "user_id")),
                         "u1");
        cr_assert(json_is_integer(json_object_get(o, "qty")));
        cr_assert_eq(json_integer_value(json_object_get(o, "qty")), 3);
        cr_assert_null(json_object_get(o, "order_id"));
        cr_assert_eq(json_object_size(o), 4);
        json_decref(o);
        free(s);

        s = ordo_client_place_order_json("my-o-1", "a1", "u1",
                                         9007199254740993LL);
        o = json_loads(s, 0, NULL);
        cr_assert_str_eq(json_string_value(json_object_get(o, "order_id")),
                         "my-o-1");
        cr_assert_eq(json_integer_value(json_object_get(o, "qty")),
                     9007199254740993LL, "int64, not a double: %s", s);
        json_decref(o);
        free(s);
        cr_assert_null(ordo_client_place_order_json("o", NULL, "u", 1));
}

/* ---- answers ----------------------------------------------------------- */

typedef struct {
        int rc;
        size_t consumed;
        int closes;
        ordo_client_result_t r;
} parsed_t;

/* An answer: status line and headers ("" or lines ending in \r\n), then
 * Content-Length counted here, then body. */
static char *answer(const char *status_line, const char *headers,
                    const char *body) {
        static char buf[2048];
        snprintf(buf, sizeof(buf), "%s\r\n%sContent-Length: %zu\r\n\r\n%s",
                 status_line, headers, strlen(body), body);
        return buf;
}

static parsed_t parse(const char *text, size_t len) {
        parsed_t p;
        memset(&p, 0, sizeof(p));
        p.closes = -1;
        p.rc = ordo_client_parse(text, len, &p.consumed, &p.closes, &p.r, err,
                                 sizeof(err));
        return p;
}

#define ACCEPTED                                                               \
        "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"          \
        "Content-Length: 64\r\n\r\n"                                           \
        "{\"command_id\":\"c0000000000000001\",\"order_id\":\"o00000000000000" \
        "2\"}"

Test(client_parse, accepted_202) {
        parsed_t p = parse(ACCEPTED, strlen(ACCEPTED));
        cr_assert_eq(p.rc, 1, "%s", err);
        cr_assert_eq(p.r.status, 202);
        cr_assert_str_eq(p.r.command_id, "c0000000000000001");
        cr_assert_str_eq(p.r.order_id, "o000000000000002");
        cr_assert_eq(p.consumed, strlen(ACCEPTED));
        cr_assert_eq(p.closes, 0, "HTTP/1.1 keeps the connection");
        cr_assert_eq(p.r.retry_after_s, 0);
        cr_assert_str_eq(p.r.reason, "");
}

/* Every prefix of an answer asks for more bytes; never a result early. */
Test(client_parse, partial_needs_more) {
        size_t n;
        for (n = 0; n < strlen(ACCEPTED); n++) {
                parsed_t p = parse(ACCEPTED, n);
                cr_assert_eq(p.rc, 0, "prefix of %zu bytes: rc %d", n, p.rc);
        }
}

/* Two answers in one read: only the first is consumed. */
Test(client_parse, pipelined_consumes_one) {
        char two[1024];
        parsed_t p;
        snprintf(two, sizeof(two), "%s%s", ACCEPTED, ACCEPTED);
        p = parse(two, strlen(two));
        cr_assert_eq(p.rc, 1);
        cr_assert_eq(p.consumed, strlen(ACCEPTED));
}

Test(client_parse, refused_400_field_and_reason) {
        const char *a = answer(
            "HTTP/1.1 400 Bad Request", "Connection: close\r\n",
            "{\"error\":\"field \\\"qty\\\": missing\",\"field\":\"qty\","
            "\"reason\":\"MISSING\"}");
        parsed_t p = parse(a, strlen(a));
        cr_assert_eq(p.rc, 1, "%s", err);
        cr_assert_eq(p.r.status, 400);
        cr_assert_str_eq(p.r.field, "qty");
        cr_assert_str_eq(p.r.reason, "MISSING");
        cr_assert_str_eq(p.r.error, "field \"qty\": missing");
        cr_assert_eq(p.closes, 1, "Connection: close");
}

/* 429: Retry-After in seconds is the wait (header names are caseless). */
Test(client_parse, rate_limited_429_retry_after) {
        const char *a =
            answer("HTTP/1.1 429 Too Many Requests", "retry-after: 3\r\n",
                   "{\"error\":\"user_id u1 over 1/s\",\"field\":"
                   "\"user_id\",\"reason\":\"RATE_LIMITED\","
                   "\"retry_after_ms\":2500}");
        parsed_t p = parse(a, strlen(a));
        cr_assert_eq(p.rc, 1, "%s", err);
        cr_assert_eq(p.r.status, 429);
        cr_assert_str_eq(p.r.reason, "RATE_LIMITED");
        cr_assert_str_eq(p.r.field, "user_id");
        cr_assert_eq(p.r.retry_after_s, 3, "the header wins");
}

/* Without the header (a proxy dropped it) the body's milliseconds, rounded
 * up, still say how long to wait. */
Test(client_parse, retry_after_from_body) {
        const char *a = answer("HTTP/1.1 429 Too Many Requests", "",
                               "{\"reason\":\"RATE_LIMITED\","
                               "\"retry_after_ms\":2500}");
        parsed_t p = parse(a, strlen(a));
        cr_assert_eq(p.rc, 1, "%s", err);
        cr_assert_eq(p.r.retry_after_s, 3);
}

/* 503: Retry-After and the ids to resend with. */
Test(client_parse, unavailable_503_has_ids) {
        const char *a =
            answer("HTTP/1.1 503 Service Unavailable", "Retry-After: 1\r\n",
                   "{\"error\":\"Local: Message timed "
                   "out\",\"reason\":\"UNAVAILABLE\","
                   "\"command_id\":\"c1\",\"order_id\":\"o1\"}");
        parsed_t p = parse(a, strlen(a));
        cr_assert_eq(p.rc, 1, "%s", err);
        cr_assert_eq(p.r.status, 503);
        cr_assert_eq(p.r.retry_after_s, 1);
        cr_assert_str_eq(p.r.reason, "UNAVAILABLE");
        cr_assert_str_eq(p.r.command_id, "c1");
        cr_assert_str_eq(p.r.order_id, "o1");
}

/* A body that is not JSON (a proxy's page) still comes back as text. */
Test(client_parse, non_json_body_is_error_text) {
        const char *a = "HTTP/1.0 502 Bad Gateway\r\nContent-Length: 11\r\n"
                        "\r\nbad gateway";
        parsed_t p = parse(a, strlen(a));
        cr_assert_eq(p.rc, 1, "%s", err);
        cr_assert_eq(p.r.status, 502);
        cr_assert_str_eq(p.r.error, "bad gateway");
        cr_assert_eq(p.closes, 1, "HTTP/1.0 closes unless keep-alive");
}

/* What it cannot frame is an error, never a guess. */
Test(client_parse, unframed_is_an_error) {
        static const char *const bad[] = {
                "SMTP 220 hello\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhi",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi",
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        };
        size_t i;
        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                cr_assert_eq(parse(bad[i], strlen(bad[i])).rc, -1, "%s",
                             bad[i]);
}
