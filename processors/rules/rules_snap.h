/*
 * ordo - snapshot I/O of the rule modules: framing, checksum, writer and
 * bounds-checked reader.
 */
#ifndef ORDO_RULES_SNAP_H
#define ORDO_RULES_SNAP_H

#include <stddef.h>
#include <stdint.h>

#include "rules.h"
#include "rules_alloc.h"

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

#endif
