/*
 * ordo - the referral graph of the rule modules.
 */
#ifndef ORDO_RULES_GRAPH_H
#define ORDO_RULES_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#include "rules_alloc.h"
#include "rules_map.h"
#include "rules_snap.h"
#include "rules_vec.h"

/* Referral graph shared by the referral and commission processors:
 * each user has at most one parent, bound at bound_ms, forever. */
typedef struct ordo__graph_s {
        ordo__arena_t arena;
        ordo__map_t users; /* user id -> index into nodes */
        ordo__vec_t nodes; /* ordo__node_t */
} ordo__graph_t;

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

/* The referral graph in a snapshot. Load fills an empty graph; on
 * failure it returns -1 (r->why set) and ordo__graph_fini frees what
 * was built. A loaded graph is checked to be a forest (RULES.md: CYCLE):
 * the referral processor's ancestor walk relies on it. */
void ordo__graph_save(const ordo__graph_t *g, ordo_buf_t *b);
int ordo__graph_load(ordo__graph_t *g, ordo__rd_t *r);

#endif
