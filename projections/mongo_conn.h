/*
 * ordo - connecting to MongoDB as configured: a client from mongo.uri,
 * with waits bounded where the URI does not set them. Every MongoDB
 * client of ordo comes from here: projection, rebuild, reconcile, dash.
 */
#ifndef ORDO_MONGO_CONN_H
#define ORDO_MONGO_CONN_H

#include <mongoc/mongoc.h>
#include <stddef.h>
#include <stdint.h>

/* The waits in ms; 0 keeps libmongoc's default. A URI option wins. */
typedef struct ordo_mongo_waits_s {
        int32_t select_ms;  /* serverSelectionTimeoutMS */
        int32_t connect_ms; /* connectTimeoutMS */
        int32_t socket_ms;  /* socketTimeoutMS */
} ordo_mongo_waits_t;

/* A loop that retries (the projection, rebuild): fail within seconds
 * when the server is away, not minutes; a bulk write may take long. */
extern const ordo_mongo_waits_t ordo_mongo_waits_retrying;
/* Small reads that must not hold a page (the dash). */
extern const ordo_mongo_waits_t ordo_mongo_waits_reads;

/* A client (error API version 2) from uri_str, named appname to the
 * server. NULL with the reason in errstr: "mongo.uri: ..." for a URI
 * that does not parse (the URI is not repeated: it may hold a
 * password), "mongo: ..." otherwise. */
mongoc_client_t *ordo_mongo_client(const char *uri_str,
                                   const ordo_mongo_waits_t *waits,
                                   const char *appname, char *errstr,
                                   size_t errstr_size);

#endif
