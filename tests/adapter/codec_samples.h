/*
 * ordo - sample messages for the codec tests, built from the field table
 * so every type and every field kind is covered without a list to keep in
 * step with messages.h. Shared by test_codec.c, write_samples.c and
 * bench_codec.c.
 */
#ifndef ORDO_CODEC_SAMPLES_H
#define ORDO_CODEC_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "messages.h"

/* Variants 0..ORDO_SAMPLE_EDGES-1 are edge cases: 0 has every string at
 * its maximum length with multi-byte UTF-8, 1 every string empty, 2 every
 * string one byte; longs walk INT64_MIN, INT64_MAX, varint boundaries and
 * arrays 0..8 items. Higher variants are pseudo-random, seeded by the
 * variant number, so a failure can be replayed. */
#define ORDO_SAMPLE_EDGES 9

void ordo_sample_fill(ordo_msg_t *m, ordo_msg_type_t type, unsigned variant);

/* 1 if every field in a's table is equal in b (and b has a's type);
 * otherwise 0 and the first difference named in why. */
int ordo_sample_equal(const ordo_msg_t *a, const ordo_msg_t *b, char *why,
                      size_t why_size);

#endif
