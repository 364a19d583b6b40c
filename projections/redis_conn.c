#include "redis_conn.h"

#include <stdio.h>
#include <string.h>

void ordo_redis_login_from(const ordo_config_t *conf, ordo_redis_login_t *l) {
        l->user = ordo_config_get(conf, "redis.user");
        l->password = ordo_config_get(conf, "redis.password");
        l->db = (int)ordo_config_get_int(conf, "redis.db");
}

static ordo_err_t ok_reply(redisContext *c, redisReply *r, const char *what,
                           char *errstr, size_t errstr_size) {
        ordo_err_t err = ORDO_ERR_OK;
        if (!r) {
                snprintf(errstr, errstr_size, "redis %s: %s", what, c->errstr);
                return ORDO_ERR_UNAVAILABLE;
        }
        if (r->type == REDIS_REPLY_ERROR) {
                snprintf(errstr, errstr_size, "redis %s: %s", what, r->str);
                err = ORDO_ERR_REDIS;
        }
        freeReplyObject(r);
        return err;
}

ordo_err_t ordo_redis_login(redisContext *c, const ordo_redis_login_t *l,
                            char *errstr, size_t errstr_size) {
        ordo_err_t err;
        if (l->password && *l->password) {
                redisReply *r =
                    l->user && *l->user
                        ? redisCommand(c, "AUTH %s %s", l->user, l->password)
                        : redisCommand(c, "AUTH %s", l->password);
                if ((err = ok_reply(c, r, "AUTH", errstr, errstr_size)))
                        return err;
        }
        if (l->db) {
                redisReply *r = redisCommand(c, "SELECT %d", l->db);
                /* No server answer changes it but a new configuration. */
                if (r && r->type == REDIS_REPLY_ERROR &&
                    strstr(r->str, "out of range")) {
                        snprintf(errstr, errstr_size,
                                 "redis.db=%d: %s (the server's `databases` "
                                 "setting is lower)",
                                 l->db, r->str);
                        freeReplyObject(r);
                        return ORDO_ERR_CONFIG;
                }
                return ok_reply(c, r, "SELECT redis.db", errstr, errstr_size);
        }
        return ORDO_ERR_OK;
}

redisContext *ordo_redis_connect(const ordo_config_t *conf, int timeout_s,
                                 char *errstr, size_t errstr_size) {
        struct timeval tv = { timeout_s, 0 };
        ordo_redis_login_t login;
        redisContext *c = redisConnectWithTimeout(
            ordo_config_get(conf, "redis.host"),
            (int)ordo_config_get_int(conf, "redis.port"), tv);
        if (!c || c->err) {
                snprintf(errstr, errstr_size, "redis %s:%lld: %s",
                         ordo_config_get(conf, "redis.host"),
                         (long long)ordo_config_get_int(conf, "redis.port"),
                         c ? c->errstr : "out of memory");
                if (c)
                        redisFree(c);
                return NULL;
        }
        redisSetTimeout(c, tv);
        ordo_redis_login_from(conf, &login);
        if (ordo_redis_login(c, &login, errstr, errstr_size)) {
                redisFree(c);
                return NULL;
        }
        return c;
}
