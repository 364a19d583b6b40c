/*
 * ordo - the gateway's API keys (`ingest.keys.file`): one key a line,
 *
 *   key_id secret [batch] [scope=Type,Type,...]
 *
 * `batch` trusts the key with ts_ms (a replayer); `scope=` names the
 * command types the key may send (`scope=*`: every type). A key without
 * scope= may send every type, as before scopes existed, and the loader
 * says so in a warning (docs/decisions/0013-gateway-door.md).
 *
 * Tuned for a few keys read at start and on SIGHUP: a key set is parsed
 * whole and immutable afterwards; requests hold a reference, so a reload
 * swaps the set without waiting for them.
 */
#ifndef ORDO_KEYS_H
#define ORDO_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "messages.h"

typedef struct {
        char id[ORDO_ID_MAX + 1];
        char secret[256];
        int trusted;     /* "batch": may supply ts_ms, not rate limited */
        int scoped;      /* 0: no scope= given (every type, with a warning) */
        uint64_t scopes; /* bit (1 << type) per command type allowed */
} ordo_key_t;

typedef struct ordo_keyset_s ordo_keyset_t;

/* Reads a keys file. NULL with errstr (naming the file and line, never
 * echoing a secret) on any fault; a file without a key is a fault. */
ordo_keyset_t *ordo_keyset_load(const char *path, char *errstr,
                                size_t errstr_size);

/* Parses keys from text (the file's contents); the same faults. */
ordo_keyset_t *ordo_keyset_parse(const char *text, const char *name,
                                 char *errstr, size_t errstr_size);

/* One more holder; release drops one and frees at zero (NULL ok). */
ordo_keyset_t *ordo_keyset_ref(ordo_keyset_t *ks);
void ordo_keyset_release(ordo_keyset_t *ks);

size_t ordo_keyset_count(const ordo_keyset_t *ks);
const ordo_key_t *ordo_keyset_at(const ordo_keyset_t *ks, size_t i);
/* NULL when id (may be NULL) is not a key of the set. */
const ordo_key_t *ordo_keyset_find(const ordo_keyset_t *ks, const char *id);

/* 1 if the key may send commands of this type. */
int ordo_key_allows(const ordo_key_t *k, ordo_msg_type_t type);

/* The key's scopes as "PlaceOrder,CancelOrder" ("*" for every type) into
 * out; returns out. */
char *ordo_key_scopes_str(const ordo_key_t *k, char *out, size_t size);

#endif
