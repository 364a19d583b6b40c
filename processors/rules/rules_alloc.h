/*
 * ordo - allocation of the rule modules: aborting on out-of-memory (a decision
 * cannot be made without memory, rules.h) and an arena for strings and
 * records that live as long as the state.
 */
#ifndef ORDO_RULES_ALLOC_H
#define ORDO_RULES_ALLOC_H

#include <stddef.h>

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

#endif
