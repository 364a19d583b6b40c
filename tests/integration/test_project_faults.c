/*
 * The projection loop (projections/project_loop.c) against librdkafka's
 * mock cluster, with broker errors injected, writing to the real Redis
 * of infra/ (ORDO_REDIS, 127.0.0.1:6379; keys under "pf<pid>:", deleted
 * at the end). The mock stands in for Kafka only to inject the faults.
 *
 * - An assignment starts at the committed offsets that the rebalance
 *   callback reads itself: when they cannot be read, the loop takes no
 *   partitions and rejoins its group, and once they can, it projects
 *   every event of the log.
 * - A dead letter Kafka refuses holds back its batch's commit: the batch
 *   is read again and the letter written.
 * - Partitions assigned while the store is away stay paused: nothing is
 *   read then and dropped (a Redis of the test's own, started late).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <signal.h>
#include <criterion/criterion.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "kafka.h"
#include "kafka_io.h"
#include "log.h"
#include "project.h"
#include "stages.h"

#define API_PRODUCE      0
#define API_OFFSET_FETCH 9
#define STOCK            100
#define RESERVED         30

static rd_kafka_t *mrk; /* owns the mock cluster */
static rd_kafka_mock_cluster_t *mc;
static ordo_config_t *conf;
static volatile sig_atomic_t stop;
static ordo_err_t result;
static char errstr[1024], prefix[64];
static pthread_t thread;
static int running;
static redisContext *rc;

static void set(const char *key, const char *value) {
        char e[256];
        cr_assert_eq(ordo_config_set(conf, key, value, e, sizeof(e)),
                     ORDO_ERR_OK, "%s: %s", key, e);
}

static void setup(void) {
        const char *addr = getenv("ORDO_REDIS");
        char e[512], host[256], port[16];
        const char *colon;
        int t;

        ordo_log_set_level(getenv("ORDO_TEST_DEBUG") ? ORDO_LOG_INFO
                                                     : ORDO_LOG_ERROR);
        if (!addr || !*addr)
                addr = "127.0.0.1:6379";
        colon = strrchr(addr, ':');
        snprintf(host, sizeof(host), "%.*s",
                 colon ? (int)(colon - addr) : (int)strlen(addr), addr);
        snprintf(port, sizeof(port), "%s", colon ? colon + 1 : "6379");
        rc = redisConnect(host, atoi(port));
        cr_assert(rc && !rc->err, "redis at %s: %s", addr,
                  rc ? rc->errstr : "no context");

        mrk =
            rd_kafka_new(RD_KAFKA_PRODUCER, rd_kafka_conf_new(), e, sizeof(e));
        cr_assert(mrk, "%s", e);
        mc = rd_kafka_mock_cluster_new(mrk, 1);
        cr_assert(mc);
        conf = ordo_config_new();
        snprintf(prefix, sizeof(prefix), "pf%d:", (int)getpid());
        set("kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc));
        set("topic.prefix", "pf.");
        set("batch.ms", "50");
        set("redis.host", host);
        set("redis.port", port);
        set("redis.prefix", prefix);
        set("metrics.listen", "");
        /* the mock keeps a static member that left until its session
         * times out: shorter rejoins */
        set("kafka.session.timeout.ms", "3000");
        for (t = 0; t < ORDO_TOPIC__COUNT; t++) {
                char name[128];
                ordo_topic_name(conf, (ordo_topic_t)t, name, sizeof(name));
                cr_assert_eq(rd_kafka_mock_topic_create(mc, name, 1, 1),
                             RD_KAFKA_RESP_ERR_NO_ERROR);
        }
}

static void teardown(void) {
        redisReply *r;
        if (running) {
                stop = 1;
                pthread_join(thread, NULL);
        }
        r = redisCommand(rc, "DEL %sstock:a1 {%sstock:a1}:version", prefix,
                         prefix);
        freeReplyObject(r);
        redisFree(rc);
        ordo_config_destroy(conf);
        rd_kafka_mock_cluster_destroy(mc);
        rd_kafka_destroy(mrk);
}

/* ActivityCreated (version 1, STOCK units), then RESERVED StockReserved
 * of one unit each (versions 2.., remaining STOCK - 1 ..); with junk, a
 * message that is no event (key "junk") in the middle; with orders, the
 * reservations carry their orders' terms (Redis writes order:o<i>). */
static void write_events(int junk, int orders) {
        char e[512], buf[2048], topic[128];
        ordo_codec_t *codec = ordo_codec_new(e, sizeof(e));
        rd_kafka_t *p =
            ordo_kafka_producer_new(conf, NULL, NULL, NULL, e, sizeof(e));
        ordo_msg_t m;
        size_t len;
        int i;

        cr_assert(codec && p, "%s", e);
        ordo_topic_name(conf, ORDO_TOPIC_ACTIVITY_EVENTS, topic, sizeof(topic));
        for (i = 0; i <= RESERVED; i++) {
                if (!i) {
                        ordo_msg_init(&m, ORDO_MSG_ACTIVITY_CREATED);
                        strcpy(m.u.activity.activity_id, "a1");
                        strcpy(m.u.activity.sku, "sku");
                        m.u.activity.price_cents = 100;
                        m.u.activity.stock = STOCK;
                        m.u.activity.per_user_limit = 5;
                        m.u.activity.end_ms = 1000000;
                } else {
                        ordo_msg_init(&m, ORDO_MSG_STOCK_RESERVED);
                        strcpy(m.u.stock.activity_id, "a1");
                        snprintf(m.u.stock.order_id, sizeof(m.u.stock.order_id),
                                 "o%d", i);
                        snprintf(m.u.stock.user_id, sizeof(m.u.stock.user_id),
                                 "u%d", i);
                        m.u.stock.qty = 1;
                        m.u.stock.remaining = STOCK - i;
                        /* the order's terms: its hash is written too */
                        m.u.stock.amount_cents = orders ? 100 : 0;
                        m.u.stock.pay_deadline_ms = orders ? 1000000 : 0;
                }
                snprintf(m.meta.id, sizeof(m.meta.id), "ev-%d", i);
                m.meta.version = i + 1;
                m.meta.ts_ms = 10 + i;
                cr_assert_eq(ordo_codec_encode(codec, &m, buf, sizeof(buf),
                                               &len, e, sizeof(e)),
                             ORDO_ERR_OK, "%s", e);
                cr_assert_eq(
                    rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic),
                                      RD_KAFKA_V_KEY("a1", 2),
                                      RD_KAFKA_V_VALUE(buf, len),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END),
                    RD_KAFKA_RESP_ERR_NO_ERROR);
                if (junk && i == RESERVED / 2)
                        cr_assert_eq(
                            rd_kafka_producev(
                                p, RD_KAFKA_V_TOPIC(topic),
                                RD_KAFKA_V_KEY("junk", 4),
                                RD_KAFKA_V_VALUE("\0junk", 5),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END),
                            RD_KAFKA_RESP_ERR_NO_ERROR);
        }
        cr_assert_eq(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_destroy(p);
        ordo_codec_destroy(codec);
}

static void *run_redis(void *arg) {
        (void)arg;
        result = ordo_projection_run(ordo_stage_find("redis"), conf, &stop,
                                     errstr, sizeof(errstr));
        return NULL;
}

/* The projected stock, or -1 while there is none (up to 60 s). */
static long long stock_when(long long want) {
        long long v = -1;
        int i;
        for (i = 0; i < 600 && v != want; i++) {
                redisReply *r = redisCommand(rc, "GET %sstock:a1", prefix);
                v = r && r->type == REDIS_REPLY_STRING ? atoll(r->str) : -1;
                freeReplyObject(r);
                if (v != want)
                        usleep(100000);
        }
        return v;
}

typedef struct {
        int n, by_redis;
} junk_t;

static void count_junk(const rd_kafka_message_t *m, void *arg) {
        junk_t *j = arg;
        const void *v;
        size_t vl;
        if (m->key_len != 4 || memcmp(m->key, "junk", 4))
                return;
        j->n++;
        v = ordo_kafka_header(m, "ordo.stage", &vl);
        j->by_redis += v && vl == 13 && !memcmp(v, "project.redis", 13);
}

/* The dead letters of key "junk" on the mock's dead-letters topic, and
 * how many name project.redis in ordo.stage. */
static junk_t junk_letters(void) {
        char e[512], topic[128];
        rd_kafka_t *rk =
            ordo_kafka_consumer_new(conf, NULL, NULL, NULL, e, sizeof(e));
        junk_t j = { 0, 0 };
        int64_t lo, hi;

        cr_assert(rk, "%s", e);
        ordo_topic_name(conf, ORDO_TOPIC_DEAD_LETTERS, topic, sizeof(topic));
        cr_assert_eq(
            ordo_kafka_watermarks(rk, topic, 0, &lo, &hi, e, sizeof(e)),
            ORDO_ERR_OK, "%s", e);
        if (hi > lo)
                cr_assert_eq(ordo_kafka_read_range(rk, topic, 0, lo, hi, "test",
                                                   NULL, count_junk, &j),
                             ORDO_ERR_OK);
        rd_kafka_destroy(rk);
        return j;
}

/* The ActivityCreated as if applied before: a store in use is not asked
 * about at start (store_lost), so the faults pushed go to the loop. */
static void store_in_use(void) {
        redisReply *r =
            redisCommand(rc, "MSET %sstock:a1 %d {%sstock:a1}:version 1",
                         prefix, STOCK, prefix);
        cr_assert(r && r->type == REDIS_REPLY_STATUS);
        freeReplyObject(r);
}

TestSuite(project_faults, .init = setup, .fini = teardown, .timeout = 180);

Test(project_faults, unread_committed_offsets_refuse_the_assignment) {
        /* The two refusals go to the first two assignments; the third
         * is taken. */
        store_in_use();
        write_events(0, 0);
        rd_kafka_mock_push_request_errors(
            mc, API_OFFSET_FETCH, 2,
            RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED,
            RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED);
        cr_assert_eq(pthread_create(&thread, NULL, run_redis, NULL), 0);
        running = 1;
        cr_assert_eq(stock_when(STOCK - RESERVED), STOCK - RESERVED,
                     "the projection never applied the log");
        stop = 1;
        pthread_join(thread, NULL);
        running = 0;
        cr_assert_eq(result, ORDO_ERR_OK, "%s", errstr);
}

Test(project_faults, a_dead_letter_not_written_is_written_again) {
        /* The letter of an undecodable event is refused by Kafka (twice):
         * the batch is not committed past it; the loop rejoins, reads the
         * batch again and writes the letter. Every event is applied, and
         * the letter is there (more than once is allowed: at least once). */
        junk_t j = { 0, 0 };
        int tries;
        store_in_use();
        write_events(1, 0);
        rd_kafka_mock_push_request_errors(
            mc, API_PRODUCE, 2, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
        cr_assert_eq(pthread_create(&thread, NULL, run_redis, NULL), 0);
        running = 1;
        cr_assert_eq(stock_when(STOCK - RESERVED), STOCK - RESERVED,
                     "the projection never applied the log");
        for (tries = 0; tries < 150 && !(j = junk_letters()).n; tries++)
                usleep(100000);
        cr_assert_geq(j.n, 1, "the junk's dead letter was lost");
        cr_assert_eq(j.by_redis, j.n, "each names project.redis");
        stop = 1;
        pthread_join(thread, NULL);
        running = 0;
        cr_assert_eq(result, ORDO_ERR_OK, "%s", errstr);
}

/* A redis-server of the test's own on port, no persistence; its pid. */
static pid_t redis_server(int port) {
        char p[16];
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (!pid) {
                snprintf(p, sizeof(p), "%d", port);
                execlp("redis-server", "redis-server", "--port", p, "--bind",
                       "127.0.0.1", "--save", "", "--appendonly", "no",
                       (char *)NULL);
                _exit(127);
        }
        return pid;
}

/* A port nothing listens on, for the redis-server started a minute later:
 * below the kernel's ephemeral range (32768 on), where no client's
 * connection can take it meanwhile, as one could the kernel's own pick. */
static int free_port(void) {
        struct sockaddr_in sa;
        int tries;
        srand((unsigned)getpid() ^ (unsigned)ordo_wall_ms());
        for (tries = 0; tries < 200; tries++) {
                int fd = socket(AF_INET, SOCK_STREAM, 0), port, ok;
                port = 20000 + rand() % 12000;
                memset(&sa, 0, sizeof(sa));
                sa.sin_family = AF_INET;
                sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                sa.sin_port = htons((uint16_t)port);
                cr_assert(fd >= 0);
                ok = !bind(fd, (struct sockaddr *)&sa, sizeof(sa));
                close(fd);
                if (ok)
                        return port;
        }
        cr_assert_fail("no free port in 20000-31999");
        return -1;
}

/* Another member of the projection's group, on activity-events alone, for
 * secs seconds: two rebalances of the projection. */
static void visit_group(int secs) {
        char e[512], topic[128], group[256];
        rd_kafka_conf_t *c = ordo_kafka_conf(conf, e, sizeof(e));
        rd_kafka_topic_partition_list_t *t =
            rd_kafka_topic_partition_list_new(1);
        rd_kafka_t *rk;
        int64_t until = ordo_monotonic_ms() + secs * 1000;

        cr_assert(c, "%s", e);
        ordo_kafka_group(conf, "project.redis", group, sizeof(group));
        cr_assert_eq(rd_kafka_conf_set(c, "group.id", group, e, sizeof(e)),
                     RD_KAFKA_CONF_OK, "%s", e);
        cr_assert_eq(
            rd_kafka_conf_set(c, "session.timeout.ms", "3000", e, sizeof(e)),
            RD_KAFKA_CONF_OK, "%s", e);
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
        cr_assert(rk, "%s", e);
        rd_kafka_poll_set_consumer(rk);
        ordo_topic_name(conf, ORDO_TOPIC_ACTIVITY_EVENTS, topic, sizeof(topic));
        rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
        cr_assert_eq(rd_kafka_subscribe(rk, t), RD_KAFKA_RESP_ERR_NO_ERROR);
        while (ordo_monotonic_ms() < until) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (m)
                        rd_kafka_message_destroy(m); /* it commits nothing */
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        rd_kafka_topic_partition_list_destroy(t);
}

Test(project_faults, a_rebalance_while_the_store_is_away_loses_nothing) {
        /* Redis is not there from the start: the projection pauses its
         * partitions and polls to stay in its group. Another member comes
         * and goes: the projection is assigned its partitions again while
         * paused, and must not read them then (it used to, and dropped
         * what it read). Then Redis starts: every order is there. */
        char port[16];
        int p = free_port(), i, missing = RESERVED;
        pid_t server;
        redisContext *own = NULL;

        snprintf(port, sizeof(port), "%d", p);
        set("redis.host", "127.0.0.1");
        set("redis.port", port);
        set("projection.batch.max", "5");
        write_events(0, 1);
        cr_assert_eq(pthread_create(&thread, NULL, run_redis, NULL), 0);
        running = 1;
        sleep(5); /* assigned, a batch read, the store away */
        visit_group(8);
        /* Assigned everything again, still paused: its poll (one each
         * retry, 5 s apart at most) must read nothing; the old code read
         * and dropped one message a poll, past the batch held. */
        sleep(45);
        server = redis_server(p);
        for (i = 0; i < 600 && missing; i++) {
                redisReply *r;
                int k;
                usleep(100000);
                if (!own || own->err) {
                        if (own)
                                redisFree(own);
                        own = redisConnect("127.0.0.1", p);
                        continue;
                }
                for (missing = 0, k = 1; k <= RESERVED; k++) {
                        r = redisCommand(own, "EXISTS %sorder:o%d", prefix, k);
                        missing += !r || r->type != REDIS_REPLY_INTEGER ||
                                   r->integer != 1;
                        freeReplyObject(r);
                }
        }
        stop = 1;
        pthread_join(thread, NULL);
        running = 0;
        if (own)
                redisFree(own);
        kill(server, SIGTERM);
        waitpid(server, NULL, 0);
        cr_assert_eq(missing, 0, "%d of %d orders never reached Redis", missing,
                     RESERVED);
        cr_assert_eq(result, ORDO_ERR_OK, "%s", errstr);
}
