/*
 * ordo - the referral graph (RULES.md "Referral binding"): one parent
 * per user, bound once and forever, with bound_ms kept for the
 * commission processor's temporal join. Shared by the referral
 * processor (which decides bindings) and the commission processor
 * (which walks them). Nodes are never removed.
 */
#include "rules_int.h"

#include <stdlib.h>
#include <string.h>

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
