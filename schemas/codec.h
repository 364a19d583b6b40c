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

/* The same, with the writer schema whose fingerprint is fp: the type's
 * current one or a version it had before (schemas/previous/). For
 * comparing with a stored message byte for byte (`ordo reconcile`).
 * ORDO_ERR_FINGERPRINT when fp is neither. */
ordo_err_t ordo_codec_encode_as(ordo_codec_t *c, const ordo_msg_t *m,
                                uint64_t fp, void *buf, size_t size,
                                size_t *len, char *errstr, size_t errstr_size);

/* From now on, ordo_codec_encode writes the types listed in spec in a
 * previous version of their schema: for a rolling upgrade, while readers
 * of the older release, which cannot decode the current version, still
 * run (decision 0024). spec: empty, or a comma-separated list of
 * <Type>.v<N>, each a file of schemas/previous/. ORDO_ERR_CONFIG_INVALID
 * with errstr naming the item that is not one; nothing changed then
 * for the items after it. */
ordo_err_t ordo_codec_write_previous(ordo_codec_t *c, const char *spec,
                                     char *errstr, size_t errstr_size);
/* The same check of spec without a codec, for the configuration: an
 * item that is not one is refused before anything starts. */
ordo_err_t ordo_codec_previous_check(const char *spec, char *errstr,
                                     size_t errstr_size);

/* The writer schema's fingerprint in a message's header; 0 when buf is
 * not single-object encoded. */
uint64_t ordo_codec_writer_fingerprint(const void *buf, size_t len);

/* The fields a writer schema of type carries, in order; NULL when fp is
 * not a schema of that type. */
const ordo_field_t *ordo_codec_writer_fields(const ordo_codec_t *c, uint64_t fp,
                                             ordo_msg_type_t type, size_t *n);

/* Any known fingerprint, the current schemas' and the versions writers
 * used before (schemas/previous/: fields added since read as zero or
 * empty, their Avro default); fills *out (type, meta, body), zeroing what the
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
