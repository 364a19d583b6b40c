/*
 * ordo - configuration: defaults, then a key=value file (-c), then ORDO_*
 * environment variables, then -X key=value flags; the last one wins.
 * Keys are dot-separated lower-case words; ORDO_TOPIC_PREFIX names
 * topic.prefix. Keys under kafka. go to librdkafka untouched.
 */
#ifndef ORDO_CONFIG_H
#define ORDO_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct ordo_config_s ordo_config_t;

/* The longest topic.prefix: Kafka's 249-character topic names, less the
 * longest topic's own name (kafka.h). */
#define ORDO_TOPIC_PREFIX_MAX 229

/* A config holding the defaults. */
ordo_config_t *ordo_config_new(void);
void ordo_config_destroy(ordo_config_t *conf); /* NULL ok */

/* Set one key. As librdkafka's conf: an unknown key outside kafka. is
 * ORDO_ERR_CONFIG_UNKNOWN (a typo in a file or flag is caught rather than
 * ignored), a value of the wrong type ORDO_ERR_CONFIG_INVALID; both name
 * the key in errstr. ORDO_ERR_NOMEM if the copy cannot be made. */
ordo_err_t ordo_config_set(ordo_config_t *conf, const char *key,
                           const char *value, char *errstr, size_t errstr_size);
/* "key=value"; ORDO_ERR_CONFIG_INVALID without '=' */
ordo_err_t ordo_config_set_pair(ordo_config_t *conf, const char *pair,
                                char *errstr, size_t errstr_size);
/* Lines of key=value; '#' starts a comment. ORDO_ERR_IO if the file
 * cannot be read; otherwise ordo_config_set's error, errstr naming the
 * line. */
ordo_err_t ordo_config_load_file(ordo_config_t *conf, const char *path,
                                 char *errstr, size_t errstr_size);
/* Every ORDO_<KEY> variable: '_' becomes '.', upper becomes lower. */
ordo_err_t ordo_config_load_env(ordo_config_t *conf, char *errstr,
                                size_t errstr_size);
/* The other way: the variable that sets key, "ORDO_" and the key with
 * '.' as '_', upper case (mongo.uri: ORDO_MONGO_URI); cut to size. */
void ordo_config_env_name(const char *key, char *out, size_t size);

struct sockaddr_in;
/* IPv4 "HOST:PORT", as the *.listen keys take it; 0 on success. The
 * host is never implied: all interfaces are "0.0.0.0", written out (an
 * outside review found ":18083" exposing the gateway unasked). */
int ordo_parse_listen(const char *listen, struct sockaddr_in *sa);

/* The read models' names, as configuration checks them (mongo.db,
 * redis.prefix) and a rebuild's target too: which is "mongo" or
 * "redis". ORDO_ERR_OK, or ORDO_ERR_CONFIG_INVALID with the reason in
 * errstr (the name, not the key). */
#define ORDO_MONGO_DB_MAX     63 /* MongoDB's own limit on database names */
#define ORDO_REDIS_PREFIX_MAX 64
ordo_err_t ordo_store_name_check(const char *which, const char *name,
                                 char *errstr, size_t errstr_size);

const char *ordo_config_get(const ordo_config_t *conf, const char *key);
/* For a key left empty whose value is another's (group.prefix: that of
 * topic.prefix), that other key; NULL otherwise. */
const char *ordo_config_derived_from(const ordo_config_t *conf,
                                     const char *key);
int64_t ordo_config_get_int(const ordo_config_t *conf, const char *key);

/* Calls fn for every key in order (for `ordo config` and for passing
 * kafka.* keys to librdkafka). */
void ordo_config_foreach(const ordo_config_t *conf,
                         void (*fn)(void *opaque, const char *key,
                                    const char *value),
                         void *opaque);

/* What `ordo config` and logs may show of a value: secrets (passwords,
 * SASL settings, private keys, tokens) become "[redacted]", and a
 * connection string's password "***". Returns value or buf. */
const char *ordo_config_redact(const char *key, const char *value, char *buf,
                               size_t size);
/* Whether the key's whole value is a secret (shown as "[redacted]"). */
int ordo_config_key_is_secret(const char *key);

/* Full topic name: topic.prefix + short name. */
void ordo_config_topic(const ordo_config_t *conf, const char *short_name,
                       char *buf, size_t size);

#endif
