/*
 * ordo - internals shared by the rule modules: an arena for strings and
 * records that live as long as the state, an open-addressing string map,
 * a growable array, the output context that stamps ids on emitted
 * messages, and checked arithmetic.
 *
 * The workload is insert-mostly (an order id is remembered forever, so
 * a retry is recognised) with lookups far outnumbering inserts; nothing
 * is ever deleted. Linear probing over (hash, key pointer, value) slots
 * kept at most 70 % full gives one or two cache misses per lookup.
 */
#ifndef ORDO_RULES_INT_H
#define ORDO_RULES_INT_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"

/* Aborts: a decision cannot be made without memory (rules.h). */
void ordo__oom(void);
void *ordo__xrealloc(void *p, size_t size);
void *ordo__xcalloc(size_t n, size_t size);

/* Arena: bump allocation from 64 KiB chunks, freed all at once. */
typedef struct ordo__arena_chunk_s ordo__arena_chunk_t;
typedef struct ordo__arena_s {
        ordo__arena_chunk_t *head;
        size_t used;  /* in head */
        size_t cap;   /* of head */
        size_t bytes; /* all chunks */
} ordo__arena_t;

void ordo__arena_fini(ordo__arena_t *a);
void *ordo__arena_alloc(ordo__arena_t *a, size_t size); /* 8-aligned */
const char *ordo__arena_strdup(ordo__arena_t *a, const char *s, size_t len);

/* String map: key -> uint32_t value. Keys are not copied: the caller
 * keeps them alive (normally in an arena). */
typedef struct ordo__slot_s {
        const char *key; /* NULL: empty */
        uint32_t hash;
        uint32_t val;
} ordo__slot_t;

typedef struct ordo__map_s {
        ordo__slot_t *slots;
        uint32_t cap; /* 0 or a power of two */
        uint32_t n;
} ordo__map_t;

uint32_t ordo__hash(const char *s, size_t len);
void ordo__map_fini(ordo__map_t *m);
/* The slot holding key, or NULL. */
ordo__slot_t *ordo__map_find(const ordo__map_t *m, const char *key, size_t len,
                             uint32_t hash);
/* Inserts a key known to be absent; returns its slot (valid until the
 * next insert). */
ordo__slot_t *ordo__map_insert(ordo__map_t *m, const char *key, uint32_t hash,
                               uint32_t val);
size_t ordo__map_bytes(const ordo__map_t *m);

/* Interned strings: one copy of each user or activity id. */
typedef struct ordo__strings_s {
        ordo__map_t map;
        ordo__arena_t *arena;
} ordo__strings_t;
const char *ordo__intern(ordo__strings_t *t, const char *s);

/* Growable array of fixed-size records. */
typedef struct ordo__vec_s {
        void *data;
        uint32_t n;
        uint32_t cap;
} ordo__vec_t;
/* Appends one zeroed record; returns its index. */
uint32_t ordo__vec_push(ordo__vec_t *v, size_t elem);
#define ORDO__VEC_AT(v, type, i) (&((type *)(v)->data)[(i)])

/* The output context of one input message. */
typedef struct ordo__out_s {
        const ordo_msg_t *in;
        const ordo_pos_t *pos;
        const ordo_sink_t *sink;
        int index;         /* of the next message */
        size_t prefix_len; /* of "<source>-<partition>-<offset>-" */
        char prefix[ORDO_MSG_ID_MAX + 1];
        ordo_msg_t msg; /* the message being built */
} ordo__out_t;

void ordo__out_init(ordo__out_t *o, const ordo_msg_t *in, const ordo_pos_t *pos,
                    const ordo_sink_t *sink);
/* Zeroes o->msg and fills its type and metadata; returns it. */
ordo_msg_t *ordo__out_begin(ordo__out_t *o, ordo_msg_type_t type,
                            int64_t ts_ms);
/* Hands o->msg to the sink and counts it. */
void ordo__out_emit(ordo__out_t *o);
/* Begins a CommandRejected for the input, with its aggregate. */
ordo_msg_t *ordo__out_reject(ordo__out_t *o, const char *aggregate_id,
                             int64_t version, const char *reason);

/* a + b, saturating at the int64 limits (deadlines far in the future
 * must not wrap around into the past). */
int64_t ordo__sat_add(int64_t a, int64_t b);
/* floor(a * b / c) for a, b >= 0, c > 0, exact in 128 bits. */
int64_t ordo__muldiv(int64_t a, int64_t b, int64_t c);

/* Digest helpers: mix values into h; items are combined by addition so
 * the digest does not depend on table layout or insertion order. */
uint64_t ordo__mix(uint64_t h, uint64_t v);
uint64_t ordo__mix_str(uint64_t h, const char *s);

/* Copies a code or id into a field (truncating, never overflowing). */
#define ORDO__SET(field, src) ordo_strlcpy((field), (src), sizeof(field))

/* Referral graph shared by the referral and commission processors:
 * each user has at most one parent, bound at bound_ms, forever. */
typedef struct ordo__graph_s {
        ordo__arena_t arena;
        ordo__map_t users; /* user id -> index into nodes */
        ordo__vec_t nodes; /* ordo__node_t */
} ordo__graph_t;

#define ORDO__NONE UINT32_MAX

typedef struct ordo__node_s {
        const char *id;
        uint32_t parent; /* ORDO__NONE if unbound */
        int64_t bound_ms;
} ordo__node_t;

void ordo__graph_fini(ordo__graph_t *g);
/* The node of a user, or ORDO__NONE. */
uint32_t ordo__graph_find(const ordo__graph_t *g, const char *user);
uint32_t ordo__graph_get(ordo__graph_t *g, const char *user); /* adds */
ordo__node_t *ordo__graph_node(const ordo__graph_t *g, uint32_t i);
/* Binds user to parent unless the user already has one; returns 1 if
 * bound. */
int ordo__graph_bind(ordo__graph_t *g, const char *user, const char *parent,
                     int64_t bound_ms);
uint64_t ordo__graph_digest(const ordo__graph_t *g);
size_t ordo__graph_bytes(const ordo__graph_t *g);

#endif
