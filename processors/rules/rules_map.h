/*
 * ordo - the string map of the rule modules: key -> uint32_t value, open
 * addressing with linear probing.
 *
 * The workload is insert-mostly (an order id is remembered forever, so
 * a retry is recognised) with lookups far outnumbering inserts; nothing
 * is ever deleted. Linear probing over (hash, key pointer, value) slots
 * kept at most 70 % full gives one or two cache misses per lookup.
 */
#ifndef ORDO_RULES_MAP_H
#define ORDO_RULES_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "rules_vec.h"

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

/* Inserts a key unless present: 1 if inserted, 0 if it was there. */
int ordo__map_add(ordo__map_t *m, const char *key, size_t len, uint32_t hash,
                  uint32_t val);
/* Indexes the records of a vector by their key (the first member of
 * each record, a string) into an empty map reserved for as many: 0, or
 * -1 on a duplicate key. A million inserts in vector order are a
 * million cache and TLB misses; sorted by home slot first (a counting
 * sort on its top bits), they sweep the table once. */
int ordo__map_index(ordo__map_t *m, const ordo__vec_t *v, size_t elem);

#endif
