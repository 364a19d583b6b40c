/*
 * The Prometheus exposition writer (text format 0.0.4): escaping,
 * histograms, the registry's families, and stage health for /healthz.
 * The integration tests feed a live /metrics to `promtool check metrics`.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

static char *capture(void (*fn)(FILE *f, void *arg), void *arg) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);
        cr_assert(f);
        fn(f, arg);
        fclose(f);
        return text;
}

static void write_all(FILE *f, void *arg) {
        (void)arg;
        ordo_metrics_write(f);
}

static void write_escaped(FILE *f, void *arg) {
        const char *labels[] = { "a", "x\"y\\z\nw", "b", "", NULL };
        (void)arg;
        ordo_prom_family(f, "t_total", "counter", "help with \\ and\nnewline");
        ordo_prom_sample(f, "t_total", labels, 3);
        ordo_prom_sample(f, "t_total", NULL, 0.25);
}

Test(metrics, escapes_label_values_and_help) {
        char *t = capture(write_escaped, NULL);
        cr_assert_str_eq(t, "# HELP t_total help with \\\\ and\\nnewline\n"
                            "# TYPE t_total counter\n"
                            "t_total{a=\"x\\\"y\\\\z\\nw\",b=\"\"} 3\n"
                            "t_total 0.25\n");
        free(t);
}

static void write_histogram(FILE *f, void *arg) {
        const double bounds[] = { 0.1, 1 };
        const uint64_t counts[] = { 2, 0, 1 }; /* not cumulative */
        const char *labels[] = { "stage", "order", NULL };
        (void)arg;
        ordo_prom_histogram(f, "h_seconds", labels, bounds, counts, 2, 7.5);
}

Test(metrics, histogram_is_cumulative_with_inf_sum_and_count) {
        char *t = capture(write_histogram, NULL);
        cr_assert_str_eq(t, "h_seconds_bucket{stage=\"order\",le=\"0.1\"} 2\n"
                            "h_seconds_bucket{stage=\"order\",le=\"1\"} 2\n"
                            "h_seconds_bucket{stage=\"order\",le=\"+Inf\"} 3\n"
                            "h_seconds_sum{stage=\"order\"} 7.5\n"
                            "h_seconds_count{stage=\"order\"} 3\n");
        free(t);
}

static void write_registry(FILE *f, void *arg) {
        (void)arg;
        ordo_metrics_write(f);
}

/* The alerts use increase(): a counter must exist at 0 before its first
 * abort or dead letter, or that first one never shows as an increase. */
Test(metrics, processor_counters_start_at_zero) {
        char *t;
        ordo_metrics_stage_start("commission", 1);
        ordo_metrics_stage_start("redis", 0);
        t = capture(write_registry, NULL);
        cr_assert(strstr(t, "ordo_transactions_aborted_total{stage="
                            "\"commission\"} 0\n"));
        cr_assert(strstr(t, "ordo_dead_letters_total{stage=\"commission\","
                            "reason=\"undecodable\"} 0\n"));
        cr_assert(strstr(t, "ordo_dead_letters_total{stage=\"commission\","
                            "reason=\"unexpected_type\"} 0\n"));
        cr_assert(strstr(t, "ordo_dead_letters_total{stage=\"commission\","
                            "reason=\"wrong_partition\"} 0\n"));
        cr_assert(strstr(t, "ordo_dead_letters_total{stage=\"redis\","
                            "reason=\"store_refused\"} 0\n"));
        cr_assert_null(strstr(t, "aborted_total{stage=\"redis\""));
        free(t);
}

Test(metrics, registry_counts_decisions_by_result_and_reason) {
        char *t;
        ordo_metrics_decision("activity", "PlaceOrder", NULL, 0);
        ordo_metrics_decision("activity", "PlaceOrder", NULL, 0);
        ordo_metrics_decision("activity", "PlaceOrder", "SOLD_OUT", 0);
        ordo_metrics_dead_letter("order", "undecodable");
        ordo_metrics_abort("order");
        ordo_metrics_transaction("order", 30);
        ordo_metrics_transaction_end("order", 20, 120, 3);
        ordo_metrics_state_bytes("order", 4096);
        ordo_metrics_state_bytes("order", 123456789012);
        t = capture(write_registry, NULL);
        cr_assert(strstr(t, "ordo_decisions_total{stage=\"activity\",command="
                            "\"PlaceOrder\",result=\"accepted\",reason=\"\"} "
                            "2\n"));
        cr_assert(strstr(t, "ordo_decisions_total{stage=\"activity\",command="
                            "\"PlaceOrder\",result=\"rejected\",reason="
                            "\"SOLD_OUT\"} 1\n"));
        cr_assert(strstr(t, "ordo_dead_letters_total{stage=\"order\",reason="
                            "\"undecodable\"} 1\n"));
        cr_assert(strstr(t, "ordo_transactions_aborted_total{stage=\"order\"} "
                            "1\n"));
        cr_assert(strstr(t, "ordo_transaction_duration_seconds_bucket{stage="
                            "\"order\",le=\"0.05\"} 1\n"));
        cr_assert(strstr(t, "ordo_transaction_duration_seconds_bucket{stage="
                            "\"order\",le=\"0.025\"} 0\n"));
        cr_assert(strstr(t, "ordo_transaction_end_seconds_bucket{stage="
                            "\"order\",step=\"offsets\",le=\"0.025\"} 1\n"));
        cr_assert(strstr(t, "ordo_transaction_end_seconds_bucket{stage="
                            "\"order\",step=\"deliveries\",le=\"0.1\"} 0\n"));
        cr_assert(strstr(t, "ordo_transaction_end_seconds_bucket{stage="
                            "\"order\",step=\"deliveries\",le=\"0.25\"} 1\n"));
        cr_assert(strstr(t, "ordo_transaction_end_seconds_count{stage="
                            "\"order\",step=\"commit\"} 1\n"));
        cr_assert(strstr(t, "# TYPE ordo_consumer_lag gauge\n"));
        cr_assert(strstr(t, "# TYPE ordo_state_bytes gauge\n"));
        cr_assert(
            strstr(t, "\nordo_state_bytes{stage=\"order\"} 123456789012\n"));
        cr_assert(
            strstr(t, "# TYPE ordo_restore_duration_seconds histogram\n"));
        cr_assert(strstr(t, "ordo_build_info{version="));
        cr_assert(strstr(t, ",librdkafka_file=\"/"));
        cr_assert(strstr(t, "\nprocess_open_fds "));
        cr_assert(strstr(t, "\nprocess_resident_memory_bytes "));
        cr_assert(strstr(t, "\nprocess_cpu_seconds_total "));
        free(t);
}

Test(metrics, health_needs_every_stage_running_with_partitions) {
        char why[256];
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why, "no stage started");
        ordo_health_start("order");
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why, "order has not joined its group yet");
        ordo_health_stop("order", ORDO_ERR_KAFKA_FATAL);
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why, "order failed: fatal Kafka error");
}

/* A stage that gave its consumer up (a rejoin backing off for up to
 * 32 s) holds nothing: it was called healthy, holding partitions, with
 * its last count, then "stalled". */
Test(metrics, a_stage_that_gave_its_consumer_up_is_not_healthy) {
        char why[256];
        ordo_health_start("commission");
        ordo_health_beat("commission");
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
        /* healthy: which stages, by name; one that beats without a
         * consumer (the dash's sampler) holds no partitions, and was
         * said to (an outside audit) */
        cr_assert_str_eq(why, "1 running (commission), each turning");
        ordo_metrics_lost("commission");
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        /* it was in its group: not "not joined yet", which read as a
         * start that never ended while Kafka was stopped (an audit) */
        cr_assert(!strncmp(why, "commission out of its group for ", 32) &&
                      strstr(why, " s, joining again (its log says why)"),
                  "%s", why);
}

/* A processor restoring partitions assigned to it is not ready, and
 * says so rather than "stalled" when the restore outlasts 30 s. */
Test(metrics, a_restoring_processor_is_not_ready) {
        char why[256];
        ordo_health_start("activity");
        ordo_health_beat("activity");
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
        ordo_health_restoring("activity", 1);
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why, "activity restoring the state of its "
                              "partitions from the log");
        ordo_health_restoring("activity", 0);
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
}

/* A projection refilling a read model that lost its contents is not
 * ready: the read model is partial until it has caught up (an outside
 * audit: /healthz said ok for the 60 s of a refill). */
Test(metrics, a_projection_refilling_is_not_ready) {
        char why[256];
        ordo_health_start("redis");
        ordo_health_beat("redis");
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
        ordo_health_refilling("redis");
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why, "redis refilling its read model from the start "
                              "of its inputs (ordo_consumer_lag says how far)");
}

/* A value prints so that it reads back exactly: a week of event lag in
 * a histogram's _sum plus half a second still moves; NaN and the
 * infinities as the text format spells them. */
Test(metrics, values_print_exactly) {
        static const double v[] = { 604800000000.0 + 0.5, 0.1, 1e-9,
                                    12345678901234567.0 };
        char *t = NULL, *p;
        size_t n = 0, i;
        FILE *f = open_memstream(&t, &n);
        for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
                ordo_prom_sample(f, "x", NULL, v[i]);
        ordo_prom_sample(f, "x", NULL, NAN);
        ordo_prom_sample(f, "x", NULL, INFINITY);
        fclose(f);
        for (p = t, i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                cr_assert(!strncmp(p, "x ", 2), "%s", t);
                cr_assert_eq(strtod(p + 2, &p), v[i], "%s", t);
                p++; /* the newline */
        }
        cr_assert_str_eq(p, "x NaN\nx +Inf\n");
        free(t);
}

/* A projection waiting for its store says so on /healthz and in
 * ordo_store_up (an outage showed nowhere for its first 30 s). */
Test(metrics, a_store_away_shows) {
        char why[256], *t;

        ordo_health_start("redis");
        ordo_metrics_store_up("redis", 0);
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why,
                         "redis cannot use its store (retrying; its log says "
                         "why)");
        t = capture(write_all, NULL);
        cr_assert(strstr(t, "\nordo_store_up{stage=\"redis\"} 0\n"), "%s", t);
        free(t);
        ordo_metrics_store_up("redis", 1);
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert_str_eq(why, "redis has not joined its group yet");
}

/* A store call unanswered for ORDO_STORE_WAIT_MS (a server stopped by
 * SIGSTOP) is a store away, and /healthz names it, not a stall: it
 * looked up for the socket timeout (an outside audit). */
Test(metrics, a_store_call_unanswered_shows) {
        char why[256], *t;

        ordo_health_start("mongo");
        ordo_metrics_store_up("mongo", 1);
        ordo_health_beat("mongo");
        ordo_metrics_store_call("mongo", 1);
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
        /* a long call that the store keeps answering is no hung store */
        usleep(ORDO_STORE_WAIT_MS / 2 * 1000);
        ordo_metrics_store_answered("mongo");
        usleep((ORDO_STORE_WAIT_MS / 2 + 500) * 1000);
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
        usleep(ORDO_STORE_WAIT_MS / 2 * 1000);
        cr_assert_not(ordo_health_check(why, sizeof(why)));
        cr_assert(strstr(why, "mongo in a call to its store for ") &&
                      strstr(why, " s (no answer, or refused and retried"),
                  "%s", why);
        t = capture(write_all, NULL);
        cr_assert(strstr(t, "\nordo_store_up{stage=\"mongo\"} 0\n"), "%s", t);
        free(t);
        /* answered: up again with the next batch that applies */
        ordo_metrics_store_call("mongo", 0);
        ordo_metrics_store_up("mongo", 1);
        cr_assert(ordo_health_check(why, sizeof(why)), "%s", why);
}

Test(metrics, listen_addresses) {
        struct sockaddr_in sa;
        cr_assert_eq(ordo_parse_listen("127.0.0.1:9464", &sa), 0);
        cr_assert_eq(ordo_parse_listen("0.0.0.0:9464", &sa), 0);
        cr_assert_neq(ordo_parse_listen(":9464", &sa), 0); /* host written */
        cr_assert_neq(ordo_parse_listen("127.0.0.1", &sa), 0);
        cr_assert_neq(ordo_parse_listen("host:99999", &sa), 0);
        cr_assert_neq(ordo_parse_listen("no.such.host:80", &sa), 0);
}
