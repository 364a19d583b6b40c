/*
 * ordo - growable arrays of fixed-size records, indexed by uint32_t.
 */
#ifndef ORDO_RULES_VEC_H
#define ORDO_RULES_VEC_H

#include <stddef.h>
#include <stdint.h>

/* No index: an absent parent, record or slot. */
#define ORDO__NONE UINT32_MAX

/* Growable array of fixed-size records. */
typedef struct ordo__vec_s {
        void *data;
        uint32_t n;
        uint32_t cap;
} ordo__vec_t;
/* Appends one zeroed record; returns its index. */
uint32_t ordo__vec_push(ordo__vec_t *v, size_t elem);
#define ORDO__VEC_AT(v, type, i) (&((type *)(v)->data)[(i)])

/* Gives an empty vector the capacity ordo__vec_push would have grown it
 * to for n records (a snapshot loader, ordo__map_reserve's twin). */
void ordo__vec_reserve(ordo__vec_t *v, size_t elem, uint32_t n);

#endif
