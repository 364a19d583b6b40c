/*
 * Integration: the C client (producers/client/ordo_client.h) against a
 * gateway started in-process (producers/ingest.h) on the real Kafka of
 * infra/ (127.0.0.1:9092, or ORDO_TEST_KAFKA), each test with its own
 * topic prefix ("client<pid>x<n>.") and a free port.
 *
 * What is checked comes from docs/command-contract.md "HTTP gateway": 202
 * with a generated order_id ("o" and 21 characters) once Kafka has it, 400
 * with field and reason, 401 reasons, 429 with Retry-After, and a kept
 * connection carrying several commands.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drop_topics.h"
#include "ingest.h"
#include "kafka.h"
#include "ordo_client.h"

#define KEY_ID "adapter-c"
#define SECRET "s3cret-c"

static ordo_config_t *conf;
static ordo_ingest_t *gw;
static char keys_path[64];
static int seq;
static char err[512];

static void set(const char *k, const char *v) {
        cr_assert_eq(ordo_config_set(conf, k, v, err, sizeof(err)), 0, "%s",
                     err);
}

static void stop(void);

/* A gateway with one key; rate and burst NULL: the defaults. Criterion
 * runs the suite's .init before a test's own, so this one replaces it. */
static void start(const char *rate, const char *burst) {
        char prefix[64];
        const char *bootstrap = getenv("ORDO_TEST_KAFKA");
        FILE *f;

        if (gw)
                stop();
        snprintf(keys_path, sizeof(keys_path), "/tmp/ordo-client-keys-%d",
                 (int)getpid());
        f = fopen(keys_path, "w");
        cr_assert(f);
        fprintf(f, "%s %s\n", KEY_ID, SECRET);
        fclose(f);
        conf = ordo_config_new();
        snprintf(prefix, sizeof(prefix), "client%dx%d.", (int)getpid(), seq++);
        set("topic.prefix", prefix);
        set("topic.partitions", "1");
        set("ingest.listen", "127.0.0.1:0");
        set("ingest.keys.file", keys_path);
        if (bootstrap)
                set("kafka.bootstrap.servers", bootstrap);
        if (rate) {
                set("ingest.rate.per.user", rate);
                set("ingest.rate.burst", burst);
        }
        cr_assert_eq(ordo_kafka_ensure_topics(conf, NULL, err, sizeof(err)), 0,
                     "is Kafka up (infra/stack up)? %s", err);
        gw = ordo_ingest_new(conf, err, sizeof(err));
        cr_assert(gw, "%s", err);
}

static void setup(void) {
        start(NULL, NULL);
}

static void setup_tight(void) {
        start("1", "1");
}

static void stop(void) {
        ordo_ingest_destroy(gw);
        ordo_test_drop_topics(conf);
        ordo_config_destroy(conf);
        unlink(keys_path);
        gw = NULL;
        conf = NULL;
}

static ordo_client_t *client(const char *key_id, const char *secret) {
        ordo_client_t *c =
            ordo_client_new("127.0.0.1", ordo_ingest_port(gw), key_id, secret,
                            15000, err, sizeof(err));
        cr_assert(c, "%s", err);
        return c;
}

TestSuite(client, .init = setup, .fini = stop, .timeout = 120);

/* No order_id: the gateway generates one and returns it with 202. */
Test(client, place_order_accepted_with_generated_id) {
        ordo_client_t *c = client(KEY_ID, SECRET);
        ordo_client_result_t r;

        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "u1", 2, &r, err,
                                             sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(r.status, 202, "%s %s", r.reason, r.error);
        cr_assert_eq(r.order_id[0], 'o', "%s", r.order_id);
        cr_assert_eq(strlen(r.order_id), 22, "%s", r.order_id);
        cr_assert_neq(r.command_id[0], '\0');
        ordo_client_destroy(c);
}

/* One handle, several commands in a row (kept connection, a fresh
 * signature each: the gateway refuses a replayed one); the client's own
 * order_id comes back. */
Test(client, several_commands_one_handle) {
        ordo_client_t *c = client(KEY_ID, SECRET);
        ordo_client_result_t r;
        char id[32];
        int i;

        for (i = 0; i < 3; i++) {
                snprintf(id, sizeof(id), "c-test-%d-%d", (int)getpid(), i);
                cr_assert_eq(ordo_client_place_order(c, id, "a1", "u2", 1, &r,
                                                     err, sizeof(err)),
                             0, "%s", err);
                cr_assert_eq(r.status, 202, "%d: %s %s", i, r.reason, r.error);
                cr_assert_str_eq(r.order_id, id);
        }
        ordo_client_destroy(c);
}

/* A structural fault: 400 names the field and the reason (contract
 * section 5: qty as a string is WRONG_TYPE). */
Test(client, refused_names_field) {
        ordo_client_t *c = client(KEY_ID, SECRET);
        ordo_client_result_t r;

        cr_assert_eq(
            ordo_client_send(c,
                             "{\"type\":\"PlaceOrder\",\"activity_id\""
                             ":\"a1\",\"user_id\":\"u1\",\"qty\":\"2\"}",
                             &r, err, sizeof(err)),
            0, "%s", err);
        cr_assert_eq(r.status, 400);
        cr_assert_str_eq(r.field, "qty");
        cr_assert_str_eq(r.reason, "WRONG_TYPE");
        ordo_client_destroy(c);
}

/* The same body sent again at once, answered at once (a 400 needs no
 * Kafka): within one millisecond the signatures were equal, and the
 * second was REPLAYED (an outside audit: 258 of 300). */
Test(client, a_resend_within_a_millisecond_is_not_replayed) {
        ordo_client_t *c = client(KEY_ID, SECRET);
        ordo_client_result_t r;
        int i;

        for (i = 0; i < 100; i++) {
                cr_assert_eq(ordo_client_send(c, "{\"type\":\"X\"}", &r, err,
                                              sizeof(err)),
                             0, "%s", err);
                cr_assert_eq(r.status, 400, "send %d: %d %s", i, r.status,
                             r.reason);
        }
        ordo_client_destroy(c);
}

/* 401: no key at all, and a wrong secret. */
Test(client, auth_refused) {
        ordo_client_t *c = client(NULL, NULL);
        ordo_client_result_t r;

        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "u1", 1, &r, err,
                                             sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(r.status, 401);
        cr_assert_str_eq(r.reason, "MISSING_AUTH");
        ordo_client_destroy(c);
        c = client(KEY_ID, "not-the-secret");
        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "u1", 1, &r, err,
                                             sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(r.status, 401);
        cr_assert_str_eq(r.reason, "BAD_SIGNATURE");
        ordo_client_destroy(c);
}

/* Rate 1/s, burst 1: the second PlaceOrder of a user at once is 429 with a
 * wait of at least a second. */
Test(client, rate_limited_has_retry_after, .init = setup_tight) {
        ordo_client_t *c = client(KEY_ID, SECRET);
        ordo_client_result_t r;

        /* Warm the producer first (connection, metadata, producer id) so
         * the two below come within a refill. */
        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "warm", 1, &r, err,
                                             sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "u9", 1, &r, err,
                                             sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(r.status, 202, "%s %s", r.reason, r.error);
        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "u9", 1, &r, err,
                                             sizeof(err)),
                     0, "%s", err);
        cr_assert_eq(r.status, 429, "%s %s", r.reason, r.error);
        cr_assert_str_eq(r.reason, "RATE_LIMITED");
        cr_assert_geq(r.retry_after_s, 1);
        ordo_client_destroy(c);
}

/* Nothing listening: a transport error, not an answer. */
Test(client, nothing_listening_is_an_error) {
        ordo_client_t *c =
            ordo_client_new("127.0.0.1", 1, NULL, NULL, 2000, err, sizeof(err));
        ordo_client_result_t r;
        cr_assert(c);
        cr_assert_eq(ordo_client_place_order(c, NULL, "a1", "u1", 1, &r, err,
                                             sizeof(err)),
                     -1);
        cr_assert(strstr(err, "connect"), "%s", err);
        ordo_client_destroy(c);
}
