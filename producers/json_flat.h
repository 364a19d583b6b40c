/*
 * ordo - a fast path for the door's common case: one flat JSON object of
 * plain ASCII strings and integers, which is what nearly every command
 * an adapter sends looks like (PlaceOrder, ConfirmPayment, ...).
 *
 * jansson's lexer reads a byte at a time through a stream with UTF-8 and
 * escape handling: 3.5 us for a 150-byte PlaceOrder, 80 % of `ordo
 * produce`'s validation (bench/RESULTS.md "Session 9"). Building the same
 * tree from this scan costs about 0.5 us.
 *
 * The contract is narrow on purpose: for any input, the answer is either
 * NULL ("not mine") or a tree equal to what json_loadb() gives for it.
 * Anything unusual - escapes, bytes outside printable ASCII, reals,
 * integers of more than 18 digits, leading zeros, arrays, true/false/null,
 * a duplicate key, trailing bytes, any syntax error - is NULL, and the
 * caller parses it with jansson, which also words every fault. The fuzz
 * target (tests/fuzz) checks the equality on every input it tries.
 */
#ifndef ORDO_JSON_FLAT_H
#define ORDO_JSON_FLAT_H

#include <jansson.h>
#include <stddef.h>

/* 1 if buf[0..len) holds only JSON whitespace (space, tab, CR, LF). */
int ordo_json_blank(const char *buf, size_t len);

/* The object in buf[0..len) as a new jansson tree (the caller decrefs it),
 * or NULL when the fast path does not take this input. */
json_t *ordo_json_flat_parse(const char *buf, size_t len);

#endif
