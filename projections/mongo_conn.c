/*
 * ordo - a MongoDB client from mongo.uri (mongo_conn.h).
 */
#include "mongo_conn.h"

#include <stdio.h>

#include "projection.h"

const ordo_mongo_waits_t ordo_mongo_waits_retrying = { 5000, 2000, 60000 };
/* With libmongoc's defaults a hung server (SIGSTOP) held the dash's
 * loop for minutes, on old figures (an outside audit). */
const ordo_mongo_waits_t ordo_mongo_waits_reads = { 3000, 2000, 10000 };

static void default_wait(mongoc_uri_t *uri, const char *key, int32_t ms) {
        if (ms > 0 && !mongoc_uri_has_option(uri, key))
                mongoc_uri_set_option_as_int32(uri, key, ms);
}

mongoc_client_t *ordo_mongo_client(const char *uri_str,
                                   const ordo_mongo_waits_t *waits,
                                   const char *appname, char *errstr,
                                   size_t errstr_size) {
        mongoc_client_t *client;
        mongoc_uri_t *uri;
        bson_error_t e;

        ordo_mongo_init();
        if (!(uri = mongoc_uri_new_with_error(uri_str, &e))) {
                snprintf(errstr, errstr_size, "mongo.uri: %s", e.message);
                return NULL;
        }
        default_wait(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                     waits->select_ms);
        default_wait(uri, MONGOC_URI_CONNECTTIMEOUTMS, waits->connect_ms);
        default_wait(uri, MONGOC_URI_SOCKETTIMEOUTMS, waits->socket_ms);
        client = mongoc_client_new_from_uri_with_error(uri, &e);
        mongoc_uri_destroy(uri);
        if (!client) {
                snprintf(errstr, errstr_size, "mongo: %s", e.message);
                return NULL;
        }
        mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
        if (appname)
                mongoc_client_set_appname(client, appname);
        return client;
}
