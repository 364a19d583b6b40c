/*
 * ordo - the referral graph (RULES.md "Referral binding"): one parent
 * per user, bound once and forever, with bound_ms kept for the
 * commission processor's temporal join. Shared by the referral
 * processor (which decides bindings) and the commission processor
 * (which walks them). Nodes are never removed.
 */
#include "rules_graph.h"

#include <stdlib.h>
#include <string.h>

#include "rules_alloc.h"
#include "rules_digest.h"
#include "rules_map.h"
#include "rules_snap.h"
#include "rules_vec.h"

void ordo__graph_fini(ordo__graph_t *g) {
        ordo__map_fini(&g->users);
        free(g->nodes.data);
        ordo__arena_fini(&g->arena);
        memset(g, 0, sizeof(*g));
}

uint32_t ordo__graph_find(const ordo__graph_t *g, const char *user) {
        size_t len = strlen(user);
        ordo__slot_t *sl =
            ordo__map_find(&g->users, user, len, ordo__hash(user, len));
        return sl ? sl->val : ORDO__NONE;
}

uint32_t ordo__graph_get(ordo__graph_t *g, const char *user) {
        size_t len = strlen(user);
        uint32_t h = ordo__hash(user, len), i;
        ordo__slot_t *sl = ordo__map_find(&g->users, user, len, h);
        ordo__node_t *n;
        if (sl)
                return sl->val;
        i = ordo__vec_push(&g->nodes, sizeof(ordo__node_t));
        n = ORDO__VEC_AT(&g->nodes, ordo__node_t, i);
        n->id = ordo__arena_strdup(&g->arena, user, len);
        n->parent = ORDO__NONE;
        ordo__map_insert(&g->users, n->id, h, i);
        return i;
}

ordo__node_t *ordo__graph_node(const ordo__graph_t *g, uint32_t i) {
        return ORDO__VEC_AT(&g->nodes, ordo__node_t, i);
}

int ordo__graph_bind(ordo__graph_t *g, const char *user, const char *parent,
                     int64_t bound_ms) {
        uint32_t u = ordo__graph_get(g, user);
        uint32_t p = ordo__graph_get(g, parent);
        ordo__node_t *n = ordo__graph_node(g, u);
        if (n->parent != ORDO__NONE || u == p)
                return 0;
        n->parent = p;
        n->bound_ms = bound_ms;
        return 1;
}

uint64_t ordo__graph_digest(const ordo__graph_t *g) {
        uint64_t d = 0, h;
        uint32_t i;
        for (i = 0; i < g->nodes.n; i++) {
                const ordo__node_t *n = ordo__graph_node(g, i);
                if (n->parent == ORDO__NONE)
                        continue; /* a bare node is no fact */
                h = ordo__mix_str(0, n->id);
                h = ordo__mix_str(h, ordo__graph_node(g, n->parent)->id);
                d += ordo__mix(h, (uint64_t)n->bound_ms);
        }
        return d;
}

size_t ordo__graph_bytes(const ordo__graph_t *g) {
        return ordo__map_bytes(&g->users) + g->arena.bytes +
               (size_t)g->nodes.cap * sizeof(ordo__node_t);
}

/* ---- snapshot ----
 * count, then per node in index order: id, parent (0 none, else 1 +
 * index), bound_ms. The user map is rebuilt from the nodes. */

void ordo__graph_save(const ordo__graph_t *g, ordo_buf_t *b) {
        uint32_t i;
        ordo__wr_varint(b, g->nodes.n);
        for (i = 0; i < g->nodes.n; i++) {
                const ordo__node_t *n = ordo__graph_node(g, i);
                ordo__wr_str(b, n->id);
                ordo__wr_varint(
                    b, n->parent == ORDO__NONE ? 0 : (uint64_t)n->parent + 1);
                ordo__wr_i64(b, n->bound_ms);
        }
}

/* 0 if following parents from every node ends at a root. Colours: 0
 * unseen, 1 on the current walk, 2 known to end at a root. */
static int is_forest(const ordo__graph_t *g) {
        uint8_t *colour = ordo__xcalloc(g->nodes.n, 1);
        uint32_t i, j;
        int ok = 1;
        for (i = 0; i < g->nodes.n && ok; i++) {
                for (j = i; j != ORDO__NONE && !colour[j];
                     j = ordo__graph_node(g, j)->parent)
                        colour[j] = 1;
                if (j != ORDO__NONE && colour[j] == 1)
                        ok = 0; /* came back onto this walk: a cycle */
                for (j = i; j != ORDO__NONE && colour[j] == 1;
                     j = ordo__graph_node(g, j)->parent)
                        colour[j] = 2;
        }
        free(colour);
        return ok;
}

int ordo__graph_load(ordo__graph_t *g, ordo__rd_t *r) {
        uint32_t n = ordo__rd_count(r, 3), i;
        if (r->why)
                return -1;
        ordo__vec_reserve(&g->nodes, sizeof(ordo__node_t), n);
        ordo__map_reserve(&g->users, n);
        for (i = 0; i < n; i++) {
                const char *id = ordo__rd_str(r, &g->arena, NULL);
                uint64_t parent = ordo__rd_upto(r, n, "parent out of range");
                int64_t bound_ms = ordo__rd_i64(r);
                uint32_t k;
                ordo__node_t *node;
                if (r->why)
                        return -1;
                if (parent == (uint64_t)i + 1) {
                        ordo__rd_fail(r, "user bound to itself");
                        return -1;
                }
                k = ordo__vec_push(&g->nodes, sizeof(ordo__node_t));
                node = ordo__graph_node(g, k);
                node->id = id;
                node->parent = parent ? (uint32_t)(parent - 1) : ORDO__NONE;
                node->bound_ms = bound_ms;
        }
        if (ordo__map_index(&g->users, &g->nodes, sizeof(ordo__node_t))) {
                ordo__rd_fail(r, "duplicate user");
                return -1;
        }
        if (!is_forest(g)) {
                ordo__rd_fail(r, "cycle in the referral graph");
                return -1;
        }
        return 0;
}
