/*
 * ordo - a small blocking client of the ingest gateway (issue 6) for API
 * adapters written in C: one handle, one keep-alive TCP connection, one
 * request at a time, signed as docs/command-contract.md "HTTP gateway"
 * says. No global state: use one handle per thread.
 *
 * Tuned for an adapter that forwards one command per incoming request: a
 * few hundred bytes out, a small JSON answer back, the connection kept
 * open between commands so a command costs one round trip.
 *
 * The pure steps (building a signed request, parsing an answer) are
 * public too, for adapters that run their own event loop.
 */
#ifndef ORDO_CLIENT_H
#define ORDO_CLIENT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ordo_client_s ordo_client_t;

/* The gateway's answer. Fields the answer does not carry are "". */
typedef struct ordo_client_result_s {
        int status; /* HTTP status: 202, 400, 401, 403, 413, 429, 503 */
        char command_id[128];
        char order_id[65]; /* PlaceOrder: the client's or the generated */
        char field[64];    /* 400, 403 and 429: the field at fault */
        char reason[32];   /* e.g. MISSING, RATE_LIMITED, UNAVAILABLE */
        char error[256];   /* the gateway's message */
        int retry_after_s; /* 429 and 503: wait this long, else 0 */
} ordo_client_result_t;

/* A client of the gateway at host:port (a name or an address; nothing is
 * connected until the first send). key_id and secret sign every request;
 * key_id NULL sends unsigned requests (a gateway without a keys file).
 * timeout_ms bounds connect, send and answer of one request (0: 10000).
 * Copies its arguments. NULL with errstr on a bad argument. */
ordo_client_t *ordo_client_new(const char *host, int port, const char *key_id,
                               const char *secret, int timeout_ms, char *errstr,
                               size_t errstr_size);

/* Closes the connection and frees the handle. NULL ok. */
void ordo_client_destroy(ordo_client_t *c);

/* Sends one JSON command object (text) to POST /v1/commands, signed with a
 * timestamp later than any this handle used before (the wall clock, or
 * one ms past the last). 0 when an HTTP answer came back: look at
 * result->status (202 accepted, 400 refused with field and reason, 403 a
 * type outside the key's scope, 429 and 503 retry after retry_after_s). -1 on a transport error
 * (errstr): the command may or may not have been taken, so resend it
 * only with its own order_id and command_id (see the contract, 503).
 * Each call signs again, so a resend is never a replayed signature. */
int ordo_client_send(ordo_client_t *c, const char *json,
                     ordo_client_result_t *result, char *errstr,
                     size_t errstr_size);

/* Builds and sends a PlaceOrder. order_id NULL lets the gateway generate
 * one (returned in result->order_id); pass your own if you may resend. */
int ordo_client_place_order(ordo_client_t *c, const char *order_id,
                            const char *activity_id, const char *user_id,
                            int64_t qty, ordo_client_result_t *result,
                            char *errstr, size_t errstr_size);

/* ---- the pure steps -------------------------------------------------- */

/* The JSON text of a PlaceOrder (order_id NULL: left out). The caller
 * frees it with free(). NULL if out of memory or an id is NULL. */
char *ordo_client_place_order_json(const char *order_id,
                                   const char *activity_id, const char *user_id,
                                   int64_t qty);

/* The bytes of "POST path" to host with body, signed with key_id and
 * secret at ts_ms (key_id NULL: unsigned). *len gets the length; the
 * caller frees the result with free(). NULL with errstr on failure. */
char *ordo_client_request(const char *host, const char *path,
                          const char *key_id, const char *secret, int64_t ts_ms,
                          const char *body, size_t body_len, size_t *len,
                          char *errstr, size_t errstr_size);

/* Parses the HTTP answer at the start of buf[0..len). 1 when it is
 * complete: *consumed gets its length (the bytes after it belong to the
 * next answer), *closes whether the server will close the connection
 * (may be NULL), and result is filled. 0 when more bytes are needed.
 * -1 with errstr when it is not an answer this client understands (a
 * body without Content-Length, chunked encoding, a malformed head). */
int ordo_client_parse(const char *buf, size_t len, size_t *consumed,
                      int *closes, ordo_client_result_t *result, char *errstr,
                      size_t errstr_size);

#endif
