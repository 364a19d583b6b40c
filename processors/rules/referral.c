/*
 * ordo - the referral processor (RULES.md "Referral binding"): one
 * partition, one writer, so the cycle check sees the whole graph.
 *
 * Aggregate: the user being bound. ReferrerBound is its only event
 * (version 1); a rejection carries version 1 if the user is bound, else 0.
 */
#include "rules.h"

#include <stdlib.h>
#include <string.h>

#include "rules_alloc.h"
#include "rules_graph.h"
#include "rules_out.h"
#include "rules_snap.h"

struct ordo_referral_state_s {
        ordo__graph_t graph;
};

ordo_referral_state_t *ordo_referral_state_new(void) {
        return ordo__xcalloc(1, sizeof(ordo_referral_state_t));
}

void ordo_referral_state_destroy(ordo_referral_state_t *s) {
        if (!s)
                return;
        ordo__graph_fini(&s->graph);
        free(s);
}

static void reject(ordo__out_t *o, const ordo_bind_body_t *b, int64_t version,
                   const char *reason) {
        ordo_msg_t *m = ordo__out_reject(o, b->user_id, version, reason);
        ORDO__SET(m->u.rejected.user_id, b->user_id);
        ordo__out_emit(o);
}

/* 1 if user is referrer or one of its ancestors. Terminates: the graph
 * has no cycle, by this very check. */
static int is_ancestor(const ordo__graph_t *g, uint32_t user,
                       uint32_t referrer) {
        uint32_t cur = referrer;
        while (cur != ORDO__NONE) {
                if (cur == user)
                        return 1;
                cur = ordo__graph_node(g, cur)->parent;
        }
        return 0;
}

static void bind(ordo_referral_state_t *s, ordo__out_t *o) {
        const ordo_bind_body_t *b = &o->in->u.bind;
        uint32_t u = ordo__graph_find(&s->graph, b->user_id);
        uint32_t r = ordo__graph_find(&s->graph, b->referrer_id);
        const ordo__node_t *un =
            u == ORDO__NONE ? NULL : ordo__graph_node(&s->graph, u);
        ordo_msg_t *m;

        if (!strcmp(b->user_id, b->referrer_id)) {
                reject(o, b, un && un->parent != ORDO__NONE, "SELF");
                return;
        }
        if (un && un->parent != ORDO__NONE) {
                if (un->parent != r) /* else the same binding: a retry */
                        reject(o, b, 1, "ALREADY_BOUND");
                return;
        }
        if (u != ORDO__NONE && r != ORDO__NONE &&
            is_ancestor(&s->graph, u, r)) {
                reject(o, b, 0, "CYCLE");
                return;
        }

        m = ordo__out_begin(o, ORDO_MSG_REFERRER_BOUND, o->in->meta.ts_ms);
        ORDO__SET(m->meta.aggregate_id, b->user_id);
        m->meta.version = 1;
        ORDO__SET(m->u.bind.user_id, b->user_id);
        ORDO__SET(m->u.bind.referrer_id, b->referrer_id);
        m->u.bind.bound_ms = o->in->meta.ts_ms;
        ordo_referral_apply(s, m);
        ordo__out_emit(o);
}

void ordo_referral_handle(ordo_referral_state_t *s, const ordo_msg_t *cmd,
                          const ordo_pos_t *pos, const ordo_sink_t *sink) {
        ordo__out_t o;
        if (cmd->type != ORDO_MSG_BIND_REFERRER)
                return;
        ordo__out_init(&o, cmd, pos, sink);
        bind(s, &o);
}

void ordo_referral_apply(ordo_referral_state_t *s, const ordo_msg_t *ev) {
        if (ev->type != ORDO_MSG_REFERRER_BOUND)
                return;
        ordo__graph_bind(&s->graph, ev->u.bind.user_id, ev->u.bind.referrer_id,
                         ev->u.bind.bound_ms);
}

size_t ordo_referral_state_bytes(const ordo_referral_state_t *s) {
        return sizeof(*s) + ordo__graph_bytes(&s->graph);
}

uint64_t ordo_referral_state_digest(const ordo_referral_state_t *s) {
        return ordo__graph_digest(&s->graph);
}

/* ---- snapshot: the graph is the whole state ---- */

void ordo_referral_state_save(const ordo_referral_state_t *s, ordo_buf_t *out) {
        size_t start = ordo__snap_begin(out, ORDO__SNAP_REFERRAL);
        ordo__graph_save(&s->graph, out);
        ordo__snap_end(out, start);
}

ordo_referral_state_t *ordo_referral_state_load(const void *data, size_t len,
                                                char *errstr,
                                                size_t errstr_size) {
        ordo__rd_t r;
        ordo_referral_state_t *s;
        if (ordo__snap_open(&r, data, len, ORDO__SNAP_REFERRAL, errstr,
                            errstr_size))
                return NULL;
        s = ordo_referral_state_new();
        ordo__graph_load(&s->graph, &r);
        if (ordo__snap_close(&r, errstr, errstr_size)) {
                ordo_referral_state_destroy(s);
                return NULL;
        }
        return s;
}
