/*
 * ordo - the gateway's memory of recent request signatures, so a signed
 * request captured on the wire cannot be sent again while its timestamp
 * is still inside the signature window.
 *
 * Tuned for one check per signed request: a fixed open-addressed table of
 * `capacity` entries (24 bytes each: 128 bits of the digest and an expiry),
 * no allocation after _new, one mutex. An entry is needed for each request
 * signed within the window (rate x window). When the probe window is full
 * of live entries, the one expiring first is dropped and counted: its
 * request could then be replayed, so watch ordo_seen_evictions() (the
 * gateway exports it as ordo_ingest_replay_evictions_total).
 *
 * The clock is the caller's (now_ms).
 */
#ifndef ORDO_SEEN_H
#define ORDO_SEEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct ordo_seen_s ordo_seen_t;

/* capacity rounded up to a power of two, at least 16. NULL when out of
 * memory. */
ordo_seen_t *ordo_seen_new(size_t capacity);
void ordo_seen_destroy(ordo_seen_t *s); /* NULL ok */

/* 1 if the digest (at least 16 bytes) was added before and its entry has
 * not expired at now_ms: a replay. Otherwise adds it, to expire at
 * expires_ms, and returns 0. Thread-safe. */
int ordo_seen_check_add(ordo_seen_t *s, const unsigned char *digest,
                        int64_t expires_ms, int64_t now_ms);

/* Live entries dropped because the table was full. */
uint64_t ordo_seen_evictions(ordo_seen_t *s);

#endif
