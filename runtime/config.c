#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every key ordo knows: its type, default and meaning. Adding a key is one
 * entry here; kafka.* keys go to librdkafka and are not listed. */
typedef struct {
        const char *key;
        enum { STRING, INT } type;
        const char *def;
        const char *doc;
} key_def_t;

static const key_def_t known[] = {
        { "kafka.bootstrap.servers", STRING, "127.0.0.1:9092",
          "Kafka brokers" },
        { "topic.prefix", STRING, "ordo.", "prefix of every topic name" },
        { "topic.partitions", INT, "6",
          "partitions of keyed topics when ordo creates them" },
        { "group.prefix", STRING, "",
          "prefix of consumer group and transactional ids (empty: "
          "topic.prefix, so a deployment on its own topics never shares or "
          "fences another's groups)" },
        { "instance.id", STRING, "0",
          "this instance's id within a stage; distinct per running instance" },
        { "batch.max", INT, "50000",
          "processors: most input messages per transaction" },
        { "batch.ms", INT, "20", "longest wait to fill a batch, in ms" },
        { "join.wait.ms", INT, "30000",
          "commission processor: before deciding, wait up to this long for "
          "the referral processor to decide what was sent to it, so that a "
          "binding sent before a payment counts for it; 0: do not wait "
          "(docs/decisions/0025)" },
        { "projection.batch.max", INT, "10000",
          "projections and rebuild: most events per batch (each batch waits "
          "for the previous one's writes; docs/decisions/0018)" },
        { "processing.guarantee", STRING, "exactly_once",
          "processors: exactly_once (outputs and input offsets in one "
          "transaction) or at_least_once (no transactions: outputs, then "
          "offsets; a crash decides a batch again, docs/decisions/0019)" },
        { "processing.pipeline", INT, "1",
          "processors: 1: decide the next batch while the previous one "
          "commits; 0: one batch at a time (docs/decisions/0018)" },
        { "schemas.write.previous", STRING, "",
          "processors: write these events in a previous version of their "
          "schema, a comma-separated list of <Type>.v<N> from "
          "schemas/previous/ (a rolling upgrade, while the older release "
          "still reads the topics; docs/decisions/0024); empty: the current "
          "versions" },
        { "snapshot.events", INT, "500000",
          "processors: snapshot a partition's state after this many new "
          "events; 0: never write or read snapshots (restore from the "
          "start)" },
        { "stop.timeout.ms", INT, "30000",
          "ordo run, process, project: once stopping (SIGTERM, SIGINT, or a "
          "failed stage), exit with status 1 if a stage has not stopped "
          "within this many ms; 0: wait for ever (docs/operating.md)" },
        { "tick.interval.ms", INT, "1000",
          "order processor: write a Tick stamped with the wall clock to each "
          "partition it owns this often, in ms; 0: off (batch runs with "
          "old timestamps send their own Ticks, docs/operating.md)" },
        { "tick.lag.ms", INT, "1000",
          "order processor: its Ticks are stamped this many ms behind the "
          "wall clock, so that a command stamped just before a deadline "
          "but still on its way to the log is decided before the Tick that "
          "would fire the deadline (docs/decisions/0028)" },
        { "mongo.uri", STRING, "mongodb://127.0.0.1:27017",
          "MongoDB connection string" },
        { "mongo.db", STRING, "ordo", "MongoDB database of the read models" },
        { "redis.host", STRING, "127.0.0.1", "Redis host" },
        { "redis.port", INT, "6379", "Redis port" },
        { "redis.user", STRING, "",
          "Redis ACL user for AUTH (empty: the default user)" },
        { "redis.password", STRING, "",
          "Redis AUTH password (empty: no AUTH)" },
        { "redis.db", INT, "0", "Redis database number (SELECT)" },
        { "redis.prefix", STRING, "ordo:", "prefix of every Redis key" },
        { "redis.rejected.ttl.s", INT, "86400",
          "seconds a REJECTED order status stays in Redis" },
        { "log.level", STRING, "info", "error, warn, info or debug" },
        { "metrics.listen", STRING, "auto",
          "Prometheus /metrics and /healthz, IPv4 HOST:PORT; empty: off; "
          "auto: the command's default (docs/operating.md)" },
        { "dash.listen", STRING, "127.0.0.1:8088",
          "ordo dash: the page's address" },
        { "dash.scrape", STRING, "127.0.0.1:9464",
          "ordo dash: comma-separated metrics addresses of the stages" },
        { "ingest.listen", STRING, "127.0.0.1:8080",
          "HTTP gateway address, IPv4 HOST:PORT (port 0: any free port)" },
        { "ingest.keys.file", STRING, "",
          "API keys of the gateway, lines \"key_id secret [batch] "
          "[scope=Type,...]\" (SIGHUP reloads); "
          "empty: authentication OFF" },
        { "ingest.signature.window.ms", INT, "300000",
          "gateway: accepted distance of X-Ordo-Timestamp from its clock, ms "
          "(at most a day)" },
        { "ingest.replay.max", INT, "1048576",
          "gateway: signatures remembered against replay (24 bytes each)" },
        { "ingest.rate.per.user", INT, "5",
          "gateway: PlaceOrder per user_id per second (0: no limit)" },
        { "ingest.rate.burst", INT, "10",
          "gateway: PlaceOrder burst per user_id" },
        { "ingest.rate.users.max", INT, "65536",
          "gateway: user_ids (and peers) tracked by the rate limits" },
        { "ingest.rate.per.key", INT, "20000",
          "gateway: commands per key per second (0: no limit)" },
        { "ingest.rate.key.burst", INT, "40000",
          "gateway: command burst per key" },
        { "ingest.rate.per.peer", INT, "20000",
          "gateway: commands per peer address per second (0: no limit)" },
        { "ingest.rate.peer.burst", INT, "40000",
          "gateway: command burst per peer address" },
        { "ingest.peer.connections.max", INT, "256",
          "gateway: open connections per peer address" },
        { "ingest.body.timeout.ms", INT, "10000",
          "gateway: deadline for a whole request body, ms" },
        { "ingest.unauth.bytes.max", INT, "16777216",
          "gateway: body bytes held before their signature is checked, "
          "all requests together" },
        { "ingest.unauth.peer.bytes.max", INT, "8388608",
          "gateway: body bytes held before their signature is checked, "
          "from one client address" },
        { "ingest.body.max", INT, "1048576",
          "gateway: largest request body, bytes" },
        { "ingest.threads", INT, "2", "gateway: HTTP threads" },
        { "ingest.instance.id", INT, "-1",
          "gateway: 0..1048575, distinct per instance, in generated ids "
          "(-1: random)" },
};
#define N_KNOWN (sizeof(known) / sizeof(known[0]))

/* Keys whose empty value means the value of another key (issue 14: a
 * second deployment that sets only topic.prefix must not join or fence
 * the first one's consumer groups and transactional ids). */
static const struct {
        const char *key, *from;
} derived[] = {
        { "group.prefix", "topic.prefix" },
};

/* The values an INT key's users can work with: a bad one is refused when
 * set, naming the key, instead of failing later in librdkafka or stalling
 * a stage (no partitions, an empty batch, a port beyond 65535). */
static const struct {
        const char *key;
        int64_t min, max;
} ranges[] = {
        { "topic.partitions", 1, 100000 },
        { "batch.max", 1, 1000000 },
        { "batch.ms", 0, 60000 },
        { "join.wait.ms", 0, 600000 },
        { "projection.batch.max", 1, 1000000 },
        { "processing.pipeline", 0, 1 },
        { "snapshot.events", 0, INT64_MAX },
        { "stop.timeout.ms", 0, 86400000 },
        { "tick.interval.ms", 0, 86400000 },
        { "tick.lag.ms", 0, 86400000 },
        { "redis.port", 1, 65535 },
        { "redis.db", 0, INT32_MAX },
        { "redis.rejected.ttl.s", 1, INT32_MAX },
        { "ingest.signature.window.ms", 1, 86400000 },
        { "ingest.replay.max", 1, INT32_MAX },
        { "ingest.rate.per.user", 0, INT32_MAX },
        { "ingest.rate.burst", 1, INT32_MAX },
        { "ingest.rate.users.max", 1, INT32_MAX },
        { "ingest.rate.per.key", 0, INT32_MAX },
        { "ingest.rate.key.burst", 1, INT32_MAX },
        { "ingest.rate.per.peer", 0, INT32_MAX },
        { "ingest.rate.peer.burst", 1, INT32_MAX },
        { "ingest.peer.connections.max", 1, INT32_MAX },
        { "ingest.body.timeout.ms", 1, INT32_MAX },
        { "ingest.unauth.bytes.max", 1, INT64_MAX },
        { "ingest.unauth.peer.bytes.max", 1, INT64_MAX },
        { "ingest.body.max", 1, INT32_MAX },
        { "ingest.threads", 1, 64 },
        { "ingest.instance.id", -1, 1048575 },
};

typedef struct {
        char *key;
        char *value;
} entry_t;

struct ordo_config_s {
        entry_t *entries;
        size_t n, cap;
};

static entry_t *find(const ordo_config_t *conf, const char *key) {
        size_t i;
        for (i = 0; i < conf->n; i++)
                if (!strcmp(conf->entries[i].key, key))
                        return &conf->entries[i];
        return NULL;
}

static int put(ordo_config_t *conf, const char *key, const char *value) {
        entry_t *e = find(conf, key);
        char *v = strdup(value);
        if (!v)
                return -1;
        if (e) {
                free(e->value);
                e->value = v;
                return 0;
        }
        if (conf->n == conf->cap) {
                size_t cap = conf->cap ? conf->cap * 2 : 32;
                entry_t *n = realloc(conf->entries, cap * sizeof(*n));
                if (!n) {
                        free(v);
                        return -1;
                }
                conf->entries = n;
                conf->cap = cap;
        }
        conf->entries[conf->n].key = strdup(key);
        if (!conf->entries[conf->n].key) {
                free(v);
                return -1;
        }
        conf->entries[conf->n++].value = v;
        return 0;
}

ordo_config_t *ordo_config_new(void) {
        ordo_config_t *conf = calloc(1, sizeof(*conf));
        size_t i;
        if (!conf)
                return NULL;
        for (i = 0; i < N_KNOWN; i++)
                if (put(conf, known[i].key, known[i].def)) {
                        ordo_config_destroy(conf);
                        return NULL;
                }
        return conf;
}

void ordo_config_destroy(ordo_config_t *conf) {
        size_t i;
        if (!conf)
                return;
        for (i = 0; i < conf->n; i++) {
                free(conf->entries[i].key);
                free(conf->entries[i].value);
        }
        free(conf->entries);
        free(conf);
}

/* librdkafka checks these itself, when the client is made. */
static const key_def_t kafka_key = { "kafka.*", STRING, "",
                                     "passed to librdkafka" };

/* The key's definition; NULL if ordo does not know it. */
static const key_def_t *lookup(const char *key) {
        size_t i;
        if (!strncmp(key, "kafka.", 6) && key[6])
                return &kafka_key;
        for (i = 0; i < N_KNOWN; i++)
                if (!strcmp(known[i].key, key))
                        return &known[i];
        return NULL;
}

/* STRING keys that take one of a few words: anything else is refused
 * when set, naming the key and the words. */
static const struct {
        const char *key;
        const char *words[3];
} choices[] = {
        { "processing.guarantee", { "exactly_once", "at_least_once", NULL } },
};

static ordo_err_t check_choice(const char *key, const char *value, char *errstr,
                               size_t errstr_size) {
        size_t i, j;
        for (i = 0; i < sizeof(choices) / sizeof(choices[0]); i++) {
                if (strcmp(choices[i].key, key))
                        continue;
                for (j = 0; choices[i].words[j]; j++)
                        if (!strcmp(choices[i].words[j], value))
                                return ORDO_ERR_OK;
                snprintf(errstr, errstr_size,
                         "configuration key \"%s\": expected %s or %s, got "
                         "\"%.40s\"",
                         key, choices[i].words[0], choices[i].words[1], value);
                return ORDO_ERR_CONFIG_INVALID;
        }
        return ORDO_ERR_OK;
}

/* STRING keys that become part of Kafka names: Kafka's characters only
 * (a topic's ASCII letters, digits, '.', '_' and '-'), so that a bad
 * one is refused naming the key, not by the broker later. */
static const struct {
        const char *key;
        size_t min, max;
} names[] = {
        /* 249, Kafka's longest topic name, less "commission-snapshots"
         * (kafka.h's longest; test_config checks it) */
        { "topic.prefix", 0, ORDO_TOPIC_PREFIX_MAX },
        /* in transactional and group.instance ids */
        { "instance.id", 1, 64 },
};

static ordo_err_t check_name(const char *key, const char *value, char *errstr,
                             size_t errstr_size) {
        size_t i, len = strlen(value);
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                if (strcmp(names[i].key, key))
                        continue;
                if (len < names[i].min || len > names[i].max ||
                    strspn(value,
                           "abcdefghijklmnopqrstuvwxyz"
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len) {
                        snprintf(errstr, errstr_size,
                                 "configuration key \"%s\": %zu to %zu of "
                                 "the letters a-z A-Z, digits, '.', '_' and "
                                 "'-' (Kafka's names), got \"%.40s\"",
                                 key, names[i].min, names[i].max, value);
                        return ORDO_ERR_CONFIG_INVALID;
                }
        }
        return ORDO_ERR_OK;
}

int ordo_parse_listen(const char *s, struct sockaddr_in *sa) {
        char host[64];
        const char *colon = strrchr(s, ':');
        char *end;
        long port;

        memset(sa, 0, sizeof(*sa));
        sa->sin_family = AF_INET;
        if (!colon || (size_t)(colon - s) >= sizeof(host))
                return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || port < 0 || port > 65535)
                return -1;
        if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
                return -1;
        sa->sin_port = htons((uint16_t)port);
        return 0;
}

/* The addresses a command listens on, checked when set: a bad one
 * failed only when its command opened it (`ordo run` after creating
 * its topics, exit 1). metrics.listen also takes "" (off) and "auto". */
static ordo_err_t check_address(const char *key, const char *value,
                                char *errstr, size_t errstr_size) {
        static const char *const keys[] = { "metrics.listen", "dash.listen",
                                            "ingest.listen" };
        struct sockaddr_in sa;
        size_t i;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if (strcmp(keys[i], key))
                        continue;
                if (!strcmp(key, "metrics.listen") &&
                    (!*value || !strcmp(value, "auto")))
                        return ORDO_ERR_OK;
                if (ordo_parse_listen(value, &sa)) {
                        snprintf(errstr, errstr_size,
                                 "configuration key \"%s\": expected an IPv4 "
                                 "HOST:PORT (port 0-65535), got \"%.60s\"",
                                 key, value);
                        return ORDO_ERR_CONFIG_INVALID;
                }
        }
        return ORDO_ERR_OK;
}

ordo_err_t ordo_store_name_check(const char *which, const char *name,
                                 char *errstr, size_t errstr_size) {
        size_t len = strlen(name);
        if (!strcmp(which, "redis")) {
                if (!len)
                        snprintf(errstr, errstr_size,
                                 "an empty prefix matches every key of the "
                                 "server");
                else if (len > ORDO_REDIS_PREFIX_MAX)
                        snprintf(errstr, errstr_size,
                                 "prefix longer than %d bytes",
                                 ORDO_REDIS_PREFIX_MAX);
                else if (name[0] == '{')
                        snprintf(errstr, errstr_size,
                                 "a prefix may not start with '{' (the guard "
                                 "keys' hash tag)");
                else
                        return ORDO_ERR_OK;
                return ORDO_ERR_CONFIG_INVALID;
        }
        if (!len || len > ORDO_MONGO_DB_MAX || strpbrk(name, "/\\. \"$")) {
                snprintf(errstr, errstr_size,
                         "\"%.80s\" is not a database name (1 to %d bytes, "
                         "none of / \\ . space \" $)",
                         name, ORDO_MONGO_DB_MAX);
                return ORDO_ERR_CONFIG_INVALID;
        }
        return ORDO_ERR_OK;
}

/* The servers' addresses: empty, a command waited 30 s for "Kafka at "
 * (an outside review), or libmongoc's default. */
static ordo_err_t check_required(const char *key, const char *value,
                                 char *errstr, size_t errstr_size) {
        static const char *const keys[] = { "kafka.bootstrap.servers",
                                            "mongo.uri", "redis.host" };
        size_t i;
        for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
                if (!strcmp(keys[i], key) && !value[strspn(value, " \t")]) {
                        snprintf(errstr, errstr_size,
                                 "configuration key \"%s\": empty (the "
                                 "server's address is required)",
                                 key);
                        return ORDO_ERR_CONFIG_INVALID;
                }
        return ORDO_ERR_OK;
}

/* mongo.db and redis.prefix, checked when set: a bad one failed only in
 * the store, for ever ("Invalid namespace", retried), or wrote the read
 * model among a shared server's other keys. */
static ordo_err_t check_store_name(const char *key, const char *value,
                                   char *errstr, size_t errstr_size) {
        char why[160];
        const char *which = !strcmp(key, "mongo.db")       ? "mongo"
                            : !strcmp(key, "redis.prefix") ? "redis"
                                                           : NULL;
        if (!which || !ordo_store_name_check(which, value, why, sizeof(why)))
                return ORDO_ERR_OK;
        snprintf(errstr, errstr_size, "configuration key \"%s\": %s", key, why);
        return ORDO_ERR_CONFIG_INVALID;
}

static int is_int(const char *v, int64_t *out) {
        char *end;
        errno = 0;
        *out = strtoll(v, &end, 10);
        return *v && !*end && !errno;
}

ordo_err_t ordo_config_set(ordo_config_t *conf, const char *key,
                           const char *value, char *errstr,
                           size_t errstr_size) {
        const key_def_t *def = lookup(key);
        int64_t n;
        size_t i;
        if (!def) {
                snprintf(errstr, errstr_size,
                         "unknown configuration key \"%s\" (see `ordo config`)",
                         key);
                return ORDO_ERR_CONFIG_UNKNOWN;
        }
        if (def->type == INT && !is_int(value, &n)) {
                snprintf(errstr, errstr_size,
                         "configuration key \"%s\": %s, got \"%.40s\"", key,
                         errno == ERANGE ? "beyond the 64-bit integer range"
                                         : "expected an integer",
                         value);
                return ORDO_ERR_CONFIG_INVALID;
        }
        for (i = 0; def->type == INT && i < sizeof(ranges) / sizeof(ranges[0]);
             i++)
                if (!strcmp(ranges[i].key, key) &&
                    (n < ranges[i].min || n > ranges[i].max)) {
                        snprintf(errstr, errstr_size,
                                 "configuration key \"%s\": %lld is out of "
                                 "range %lld..%lld",
                                 key, (long long)n, (long long)ranges[i].min,
                                 (long long)ranges[i].max);
                        return ORDO_ERR_CONFIG_INVALID;
                }
        if (def->type == STRING &&
            (check_choice(key, value, errstr, errstr_size) ||
             check_name(key, value, errstr, errstr_size) ||
             check_address(key, value, errstr, errstr_size) ||
             check_store_name(key, value, errstr, errstr_size) ||
             check_required(key, value, errstr, errstr_size)))
                return ORDO_ERR_CONFIG_INVALID;
        if (put(conf, key, value)) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_NOMEM;
        }
        return ORDO_ERR_OK;
}

static char *trim(char *s) {
        char *e;
        while (isspace((unsigned char)*s))
                s++;
        e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

#define KEY_CHARS                                                              \
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

ordo_err_t ordo_config_set_pair(ordo_config_t *conf, const char *pair,
                                char *errstr, size_t errstr_size) {
        const char *eq;
        char *buf;
        size_t n, sp;
        ordo_err_t err;

        while (isspace((unsigned char)*pair))
                pair++;
        /* Only the leading key-like characters are ever shown: the rest
         * may be a secret typed with the wrong separator
         * ("redis.password: ..."). */
        n = strspn(pair, KEY_CHARS);
        sp = n + strspn(pair + n, " \t"); /* "key = value" */
        eq = pair[sp] == '=' ? pair + sp : NULL;
        if (!eq && !pair[n + strspn(pair + n, " \t\r\n")]) {
                /* a line of key characters alone: maybe a password on a
                 * line of its own, so not even those */
                snprintf(errstr, errstr_size,
                         "expected key=value, got a line of %zu characters "
                         "with no \"=\" (not shown: it may be a secret)",
                         n);
                return ORDO_ERR_CONFIG_INVALID;
        }
        if (!n || !eq) {
                snprintf(errstr, errstr_size,
                         "expected key=value, got %s after \"%.*s\"",
                         strchr(pair, '=') ? "a character a key cannot have"
                                           : "no \"=\"",
                         (int)(n < 100 ? n : 100), pair);
                return ORDO_ERR_CONFIG_INVALID;
        }
        if (!(buf = strdup(pair))) {
                snprintf(errstr, errstr_size, "out of memory");
                return ORDO_ERR_NOMEM;
        }
        buf[n] = '\0';
        err = ordo_config_set(conf, buf, trim(buf + (eq - pair) + 1), errstr,
                              errstr_size);
        free(buf);
        return err;
}

ordo_err_t ordo_config_load_file(ordo_config_t *conf, const char *path,
                                 char *errstr, size_t errstr_size) {
        FILE *f = fopen(path, "r");
        char *line = NULL, err[512];
        size_t cap = 0;
        ssize_t len;
        int lineno = 0;
        ordo_err_t e = ORDO_ERR_OK;
        struct stat st;
        if (!f) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return ORDO_ERR_IO;
        }
        if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(EISDIR));
                fclose(f);
                return ORDO_ERR_IO;
        }
        /* Lines of any length: a long one cut in two once applied its
         * tail (the end of a comment) as a setting. */
        while ((len = getline(&line, &cap, f)) >= 0) {
                char *s = line;
                lineno++;
                if (memchr(line, '\0', (size_t)len)) {
                        /* it would cut the value there, unseen */
                        snprintf(errstr, errstr_size,
                                 "%s:%d: a NUL byte (is it a text file?)", path,
                                 lineno);
                        e = ORDO_ERR_CONFIG_INVALID;
                        break;
                }
                if (lineno == 1 && !strncmp(s, "\xef\xbb\xbf", 3))
                        s += 3; /* a UTF-8 byte order mark */
                s = trim(s);
                if (!*s || *s == '#')
                        continue;
                if ((e = ordo_config_set_pair(conf, s, err, sizeof(err)))) {
                        snprintf(errstr, errstr_size, "%s:%d: %s", path, lineno,
                                 err);
                        break;
                }
        }
        if (!e && ferror(f)) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                e = ORDO_ERR_IO;
        }
        free(line);
        fclose(f);
        return e;
}

extern char **environ;

void ordo_config_env_name(const char *key, char *out, size_t size) {
        size_t n = (size_t)snprintf(out, size, "ORDO_");
        for (; *key && n + 1 < size; key++)
                out[n++] =
                    *key == '.' ? '_' : (char)toupper((unsigned char)*key);
        if (n < size)
                out[n] = '\0';
}

ordo_err_t ordo_config_load_env(ordo_config_t *conf, char *errstr,
                                size_t errstr_size) {
        char **e;
        for (e = environ; *e; e++) {
                char key[256], msg[512], *eq;
                size_t i, n;
                ordo_err_t err;
                if (strncmp(*e, "ORDO_", 5) || !(eq = strchr(*e, '=')))
                        continue;
                n = (size_t)(eq - (*e + 5));
                if (n == 0 || n >= sizeof(key))
                        continue;
                for (i = 0; i < n; i++) {
                        char c = (*e)[5 + i];
                        key[i] = c == '_' ? '.' : (char)tolower(c);
                }
                key[n] = '\0';
                /* Variables for tools and tests, not configuration. */
                if (!lookup(key))
                        continue;
                if ((err = ordo_config_set(conf, key, eq + 1, msg,
                                           sizeof(msg)))) {
                        /* Say where it came from: no flag or file shows it. */
                        snprintf(errstr, errstr_size, "environment %.*s: %s",
                                 (int)(eq - *e), *e, msg);
                        return err;
                }
        }
        return ORDO_ERR_OK;
}

/* The key an empty derived entry takes its value from, or NULL. */
static const char *source_of(const entry_t *e) {
        size_t i;
        if (!*e->value)
                for (i = 0; i < sizeof(derived) / sizeof(derived[0]); i++)
                        if (!strcmp(e->key, derived[i].key))
                                return derived[i].from;
        return NULL;
}

/* The entry's value, or for an empty derived key its source's value. */
static const char *value_of(const ordo_config_t *conf, const entry_t *e) {
        const char *from = source_of(e);
        return from ? ordo_config_get(conf, from) : e->value;
}

const char *ordo_config_derived_from(const ordo_config_t *conf,
                                     const char *key) {
        entry_t *e = find(conf, key);
        return e ? source_of(e) : NULL;
}

const char *ordo_config_get(const ordo_config_t *conf, const char *key) {
        entry_t *e = find(conf, key);
        return e ? value_of(conf, e) : NULL;
}

int64_t ordo_config_get_int(const ordo_config_t *conf, const char *key) {
        const char *v = ordo_config_get(conf, key);
        return v ? strtoll(v, NULL, 10) : 0;
}

void ordo_config_foreach(const ordo_config_t *conf,
                         void (*fn)(void *opaque, const char *key,
                                    const char *value),
                         void *opaque) {
        size_t i;
        for (i = 0; i < conf->n; i++)
                fn(opaque, conf->entries[i].key,
                   value_of(conf, &conf->entries[i]));
}

int ordo_config_key_is_secret(const char *key) {
        static const char *words[] = { "password",   "secret",        "sasl.",
                                       "ssl.key.",   "ssl.keystore.", "token",
                                       "credentials" };
        size_t i;
        for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (strstr(key, words[i]))
                        return 1;
        return 0;
}

/* A URI query parameter whose value is a secret: libmongoc's
 * tlsCertificateKeyFilePassword, authMechanismProperties (AWS session
 * tokens), and anything naming a password, secret or token. */
static int is_secret_param(const char *name, size_t len) {
        static const char *words[] = { "password", "secret", "token",
                                       "authmechanismproperties" };
        char low[64];
        size_t i;
        if (len >= sizeof(low))
                return 1;
        for (i = 0; i < len; i++)
                low[i] = (char)tolower((unsigned char)name[i]);
        low[len] = '\0';
        for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
                if (strstr(low, words[i]))
                        return 1;
        return 0;
}

/* Appends n bytes of s to buf (of size bytes, *used so far), truncating. */
static void append(char *buf, size_t size, size_t *used, const char *s,
                   size_t n) {
        if (*used + 1 >= size)
                return;
        if (n > size - 1 - *used)
                n = size - 1 - *used;
        memcpy(buf + *used, s, n);
        *used += n;
        buf[*used] = '\0';
}

const char *ordo_config_redact(const char *key, const char *value, char *buf,
                               size_t size) {
        const char *auth, *query, *at = NULL, *colon, *p;
        size_t used = 0;
        if (!*value)
                return value;
        if (ordo_config_key_is_secret(key))
                return "[redacted]";
        if (!size)
                return value;
        /* Without a scheme (a mistyped URI) the userinfo is hidden all the
         * same: "user:password@host". */
        auth = strstr(value, "://");
        auth = auth ? auth + 3 : value;
        if (auth == value && !strchr(value, '@'))
                return value;
        buf[0] = '\0';
        /* scheme://user:password@host...: the userinfo ends at the last
         * '@' of all, so a password typed with a raw '@', '/' or '?' is
         * still hidden whole (an '@' in the query hides the host too:
         * too much rather than too little). */
        at = strrchr(auth, '@');
        query = (at ? at : auth) + strcspn(at ? at : auth, "?");
        colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon) {
                append(buf, size, &used, value, (size_t)(colon + 1 - value));
                append(buf, size, &used, "***", 3);
                append(buf, size, &used, at, (size_t)(query - at));
        } else
                append(buf, size, &used, value, (size_t)(query - value));
        /* Then each query parameter, a secret one's value hidden. */
        for (p = query; *p; p += 1 + strcspn(p + 1, "&;")) {
                size_t n = 1 + strcspn(p + 1, "&;");
                const char *eq = memchr(p + 1, '=', n - 1);
                if (eq && is_secret_param(p + 1, (size_t)(eq - p - 1))) {
                        append(buf, size, &used, p, (size_t)(eq + 1 - p));
                        append(buf, size, &used, "***", 3);
                } else
                        append(buf, size, &used, p, n);
        }
        return buf;
}

void ordo_config_topic(const ordo_config_t *conf, const char *short_name,
                       char *buf, size_t size) {
        snprintf(buf, size, "%s%s", ordo_config_get(conf, "topic.prefix"),
                 short_name);
}
