/*
 * ordo - the codec between ordo_msg_t and Avro single-object encoding,
 * the wire format of every command and event topic (DESIGN.md, "Avro").
 *
 * A message is: C3 01, the 8-byte little-endian CRC-64-AVRO fingerprint
 * of the writer schema's Parsing Canonical Form, then the Avro binary
 * datum of the record whose fields ordo_msg_fields() lists. Any Avro
 * library can decode it with schemas/<Type>.avsc alone.
 *
 * Tuned for the stream loop: one small flat record per call, no
 * allocation on either path, errstr formatted only on failure.
 * See docs/decisions/0001-avro-single-object.md.
 */
#ifndef ORDO_CODEC_H
#define ORDO_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "messages.h"

/* The Kafka header that names the type */
#define ORDO_TYPE_HEADER "ordo.type"
/* Present on the Ticks a time-driven processor writes itself
 * (tick.interval.ms): `ordo lag` and `ordo wait` do not wait for them. */
#define ORDO_AUTOTICK_HEADER "ordo.autotick"

/* Marker and header size of single-object encoding. */
#define ORDO_CODEC_HEADER_SIZE 10

typedef struct ordo_codec_s ordo_codec_t; /* not thread-safe: one per thread */

/* NULL with errstr set on failure. */
ordo_codec_t *ordo_codec_new(char *errstr, size_t errstr_size);
void ordo_codec_destroy(ordo_codec_t *c); /* NULL ok */

/* Single-object encoding: C3 01, 8-byte little-endian CRC-64-AVRO
 * fingerprint, binary datum. Writes into buf; ORDO_ERR_OVERSIZE if size is
 * too small. *len is the number of bytes written on success.
 * Refuses (ORDO_ERR_INVALID_ARG) an unknown type, a string field that is
 * not NUL-terminated within its buffer or is not valid UTF-8, and an
 * array count outside 0..ORDO_LEVELS_WIRE: what this writes, every Avro
 * reader can read. */
ordo_err_t ordo_codec_encode(ordo_codec_t *c, const ordo_msg_t *m, void *buf,
                             size_t size, size_t *len, char *errstr,
                             size_t errstr_size);

/* Any known fingerprint; fills *out (type, meta, body), zeroing what the
 * type does not carry. Refuses truncated input, garbage, unknown
 * fingerprint, strings longer than the field, trailing bytes, with a clear
 * errstr; never crashes:
 *   ORDO_ERR_BAD_ENCODING  bad marker, truncated, malformed varint, bool
 *                          not 0/1, string not UTF-8 or with a NUL,
 *                          trailing bytes
 *   ORDO_ERR_FINGERPRINT   no schema of ours has this fingerprint
 *   ORDO_ERR_OVERSIZE      a string longer than its field, more than
 *                          ORDO_LEVELS_WIRE array items
 * *out is unspecified after an error. errstr may be NULL. */
ordo_err_t ordo_codec_decode(ordo_codec_t *c, const void *buf, size_t len,
                             ordo_msg_t *out, char *errstr, size_t errstr_size);

/* schema text and fingerprint of a type, for tools; NULL and 0 for a type
 * that has none. The text is the .avsc as written, with docs and
 * defaults. */
const char *ordo_schema_json(ordo_msg_type_t t);
uint64_t ordo_schema_fingerprint(ordo_msg_type_t t);

#endif
