/*
 * ordo - a message as one line of JSON, for `ordo replay` and tools
 * (`ordo produce --dry-run` validates only; it prints no messages). The
 * inverse of validate.h for commands:
 * ordo_validate_command(ordo_msg_to_json(m)) with keep_ts and
 * allow_internal gives m back.
 */
#ifndef ORDO_JSON_OUT_H
#define ORDO_JSON_OUT_H

#include <stddef.h>

#include "messages.h"

/* A compact JSON object {"type":"...", <fields in table order>}, field
 * names exactly as ordo_msg_fields() (and so the .avsc files). Optional
 * strings that are empty (a command's command_id, causation_id,
 * correlation_id) are left out; everything else is always written.
 * Bytes of a string that are not valid UTF-8 (possible only in a message
 * that did not come through validation) are written as U+FFFD, so the
 * output is always valid JSON. Returns a malloc'd NUL-terminated string
 * the caller frees, or NULL on allocation failure or an unknown type. */
char *ordo_msg_to_json(const ordo_msg_t *m);

/* The same with every field of schemas/<type>.avsc, empty strings
 * included: the record as Avro holds it (`ordo replay`). fields (n of
 * them), when not NULL, are those of the version of the schema that
 * wrote the message (ordo_codec_writer_fields): a field it did not have
 * is left out, not shown as 0. */
char *ordo_msg_to_json_full(const ordo_msg_t *m, const ordo_field_t *fields,
                            size_t n);

/* Internal, shared with validate.c: the length of the valid UTF-8
 * sequence at s (of at most n bytes), or 0 if it is not one. */
size_t ordo__utf8_seq(const unsigned char *s, size_t n);

#endif
