/*
 * ordo - connecting to Redis as configured: redis.host and redis.port,
 * then AUTH with redis.user and redis.password (Redis 6 ACL users, or the
 * default user when redis.user is empty) and SELECT redis.db. Every
 * Redis connection of ordo goes through here: projection, rebuild,
 * reconcile, dash.
 */
#ifndef ORDO_REDIS_CONN_H
#define ORDO_REDIS_CONN_H

#include <hiredis/hiredis.h>

#include "config.h"
#include "err.h"

/* The login as configured; the strings point into conf. */
typedef struct ordo_redis_login_s {
        const char *user;     /* "" or NULL: the default user */
        const char *password; /* "" or NULL: no AUTH */
        int db;
} ordo_redis_login_t;

void ordo_redis_login_from(const ordo_config_t *conf, ordo_redis_login_t *l);

/* AUTH and SELECT on a fresh connection. ORDO_ERR_REDIS with the
 * server's answer in errstr (the password is never included);
 * ORDO_ERR_CONFIG for a redis.db the server does not have. */
ordo_err_t ordo_redis_login(redisContext *c, const ordo_redis_login_t *l,
                            char *errstr, size_t errstr_size);

/* Connect with a timeout of timeout_s seconds (also set as the command
 * timeout), then log in. NULL with the reason in errstr. */
redisContext *ordo_redis_connect(const ordo_config_t *conf, int timeout_s,
                                 char *errstr, size_t errstr_size);

#endif
