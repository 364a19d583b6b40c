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
/* a - b, saturating likewise. */
int64_t ordo__sat_sub(int64_t a, int64_t b);
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

/* ---- snapshots (rules.h "Snapshots") ----
 *
 * Framing, all integers little-endian whatever the host:
 *   "ORDOSNAP"   8 bytes, magic
 *   version      u32, ORDO__SNAP_VERSION
 *   kind         u8, ordo__snap_kind_t
 *   body length  u64
 *   body         the module's state (below)
 *   checksum     u64, ordo__sum64() of every byte before it
 * Inside a body: counts and indices are LEB128 varints, int64 values
 * zigzag varints, strings a varint length then the bytes (no NUL), and
 * an optional string or reference 0 for NULL, else 1 + length/index.
 * Vectors are written in index order. A hash map that indexes a vector
 * is not written: it is rebuilt from the vector at the capacity the
 * original had (its slot layout may differ, which no lookup, digest or
 * save depends on). The maps that hold more than their vector (the
 * activity's order ids with SEEN markers, the interned strings) are
 * written in layout order (ordo__map_iter_t) and come back slot for
 * slot. So a loaded state decides as the saved one did and saves to
 * the very same bytes. Bump the version on any change to a body. */
#define ORDO__SNAP_VERSION 1

typedef enum {
        ORDO__SNAP_ACTIVITY = 1,
        ORDO__SNAP_ORDER,
        ORDO__SNAP_REFERRAL,
        ORDO__SNAP_COMMISSION
} ordo__snap_kind_t;

/* 64-bit checksum: h = 0x9e3779b97f4a7c15 ^ n; for each 8-byte
 * little-endian word w (the last one zero-padded): h = (h ^ w) *
 * 0xff51afd7ed558ccd, h ^= h >> 32; then the murmur3 finaliser. Each
 * step is a bijection of h and injective in w, so any change confined to
 * one word (any single corrupted byte) always changes the sum. */
uint64_t ordo__sum64(const void *data, size_t n);

/* Writer: appends to b, growing it with ordo__xrealloc. */
void ordo__wr_bytes(ordo_buf_t *b, const void *p, size_t n);
void ordo__wr_u8(ordo_buf_t *b, uint8_t v);
void ordo__wr_u32(ordo_buf_t *b, uint32_t v); /* fixed, 4 bytes */
void ordo__wr_u64(ordo_buf_t *b, uint64_t v); /* fixed, 8 bytes */
void ordo__wr_varint(ordo_buf_t *b, uint64_t v);
void ordo__wr_i64(ordo_buf_t *b, int64_t v); /* zigzag varint */
void ordo__wr_str(ordo_buf_t *b, const char *s);
void ordo__wr_optstr(ordo_buf_t *b, const char *s); /* NULL ok */
/* Appends the header; returns where the snapshot starts in b. */
size_t ordo__snap_begin(ordo_buf_t *b, ordo__snap_kind_t kind);
/* Patches the body length and appends the checksum. */
void ordo__snap_end(ordo_buf_t *b, size_t start);

/* Reader: bounds-checked, never reads past the end. The first failure
 * is kept (with its byte offset); after it every read returns 0 or ""
 * without moving, so a loader checks r->why once per record. */
typedef struct ordo__rd_s {
        const uint8_t *base; /* the snapshot's first byte */
        const uint8_t *p, *end;
        const char *why; /* the first failure, or NULL */
        size_t at;       /* its byte offset from base */
} ordo__rd_t;

void ordo__rd_fail(ordo__rd_t *r, const char *why);
uint8_t ordo__rd_u8(ordo__rd_t *r);
uint64_t ordo__rd_varint(ordo__rd_t *r);
int64_t ordo__rd_i64(ordo__rd_t *r);
/* A varint that must be <= max. */
uint64_t ordo__rd_upto(ordo__rd_t *r, uint64_t max, const char *what);
/* The number of items that follow, each taking at least min_size bytes:
 * fails unless they fit in what is left, so no allocation is ever sized
 * by an unchecked count. */
uint32_t ordo__rd_count(ordo__rd_t *r, size_t min_size);
/* A string of 0..ORDO_ID_MAX bytes without NUL, copied into a. "" after
 * a failure. */
const char *ordo__rd_str(ordo__rd_t *r, ordo__arena_t *a, size_t *len);
/* The same, 0 for NULL. */
const char *ordo__rd_optstr(ordo__rd_t *r, ordo__arena_t *a);

/* Checks magic, version, length, checksum and kind, and points r at the
 * body: 0, or -1 with the reason in errstr. */
int ordo__snap_open(ordo__rd_t *r, const void *data, size_t len,
                    ordo__snap_kind_t kind, char *errstr, size_t errstr_size);
/* After the body: 0 if it was read exactly and without failure, else -1
 * with "snapshot: <why> at byte <n>" in errstr. */
int ordo__snap_close(ordo__rd_t *r, char *errstr, size_t errstr_size);

/* The capacity a map reaches after n inserts (ordo__map_insert's growth
 * rule), and an empty map given it at once, so n inserts never grow. */
uint32_t ordo__map_cap_for(uint32_t n);
void ordo__map_reserve(ordo__map_t *m, uint32_t n);

/* The keys of a map in layout order: slot order, starting after an
 * empty slot. Inserted in this order into a map reserved for as many
 * keys, they land in the very same slots: linear probing never crosses
 * an empty slot, so every slot between a key's home and its place was
 * taken before it, as it was in the original. */
typedef struct ordo__map_iter_s {
        const ordo__map_t *m;
        uint32_t i, left;
} ordo__map_iter_t;
void ordo__map_iter_init(ordo__map_iter_t *it, const ordo__map_t *m);
const ordo__slot_t *ordo__map_iter_next(ordo__map_iter_t *it); /* NULL: end */

/* The same for vectors: cap as ordo__vec_push would have grown it. */
void ordo__vec_reserve(ordo__vec_t *v, size_t elem, uint32_t n);

/* Inserts a key unless present: 1 if inserted, 0 if it was there. */
int ordo__map_add(ordo__map_t *m, const char *key, size_t len, uint32_t hash,
                  uint32_t val);
/* Indexes the records of a vector by their key (the first member of
 * each record, a string) into an empty map reserved for as many: 0, or
 * -1 on a duplicate key. A million inserts in vector order are a
 * million cache and TLB misses; sorted by home slot first (a counting
 * sort on its top bits), they sweep the table once. */
int ordo__map_index(ordo__map_t *m, const ordo__vec_t *v, size_t elem);

/* Interned strings in a snapshot: the table in layout order, then
 * references (1 + index, 0 for NULL) wherever a record points at one.
 * Saving maps each interned pointer to its index in a table keyed by
 * the pointer itself: no string is hashed or compared again. */
typedef struct ordo__strtab_slot_s {
        const char *key; /* an interned pointer, NULL: empty */
        uint32_t rank;   /* its index in the written table */
} ordo__strtab_slot_t;

typedef struct ordo__strtab_s {
        ordo__strtab_slot_t *slots; /* mask + 1 of them */
        uint32_t mask;
        const char *last; /* one-entry cache: ids repeat in runs */
        uint32_t last_rank;
} ordo__strtab_t;
void ordo__strtab_save(ordo__strtab_t *st, const ordo__strings_t *t,
                       ordo_buf_t *b);
void ordo__strtab_wr(ordo__strtab_t *st, ordo_buf_t *b, const char *s);
/* Hints that s will be written soon (a record or two ahead). */
void ordo__strtab_prefetch(const ordo__strtab_t *st, const char *s);
void ordo__strtab_fini(ordo__strtab_t *st);
/* Reads the table into t (empty); returns the strings by index (the
 * caller frees the array, not the strings) and their number in *n, or
 * NULL on failure. */
const char **ordo__strtab_load(ordo__rd_t *r, ordo__strings_t *t, uint32_t *n);
/* Reads a reference; NULL for 0 if optional, else a failure. */
const char *ordo__strtab_rd(ordo__rd_t *r, const char **tab, uint32_t n,
                            int optional);

/* The referral graph in a snapshot. Load fills an empty graph; on
 * failure it returns -1 (r->why set) and ordo__graph_fini frees what
 * was built. A loaded graph is checked to be a forest (RULES.md: CYCLE):
 * the referral processor's ancestor walk relies on it. */
void ordo__graph_save(const ordo__graph_t *g, ordo_buf_t *b);
int ordo__graph_load(ordo__graph_t *g, ordo__rd_t *r);

#endif
