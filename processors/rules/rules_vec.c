/*
 * ordo - growable arrays (rules_vec.h).
 */
#include "rules_vec.h"

#include <string.h>

#include "rules_alloc.h"

uint32_t ordo__vec_push(ordo__vec_t *v, size_t elem) {
        if (v->n == v->cap) {
                uint32_t cap = v->cap ? v->cap * 2 : 64;
                if (cap < v->cap || cap == ORDO__NONE)
                        ordo__oom();
                v->data = ordo__xrealloc(v->data, (size_t)cap * elem);
                v->cap = cap;
        }
        memset((char *)v->data + (size_t)v->n * elem, 0, elem);
        return v->n++;
}

void ordo__vec_reserve(ordo__vec_t *v, size_t elem, uint32_t n) {
        uint32_t cap = 64;
        if (!n)
                return;
        while (cap < n) {
                if (cap > UINT32_MAX / 2)
                        ordo__oom(); /* over 2^31 records: cannot be */
                cap *= 2;
        }
        v->data = ordo__xrealloc(v->data, (size_t)cap * elem);
        v->cap = cap;
}
