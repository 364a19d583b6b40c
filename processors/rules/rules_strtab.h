/*
 * ordo - interned strings of the rule modules (one copy of each user or
 * activity id) and their table in a snapshot.
 */
#ifndef ORDO_RULES_STRTAB_H
#define ORDO_RULES_STRTAB_H

#include <stdint.h>

#include "rules_alloc.h"
#include "rules_map.h"
#include "rules_snap.h"

/* Interned strings: one copy of each user or activity id. */
typedef struct ordo__strings_s {
        ordo__map_t map;
        ordo__arena_t *arena;
} ordo__strings_t;
const char *ordo__intern(ordo__strings_t *t, const char *s);

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

#endif
