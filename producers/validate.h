/*
 * ordo - the door: one JSON command in, a validated ordo_msg_t out, or a
 * structural fault that names the field and the reason.
 *
 * Tuned for the ingest gateway and `ordo produce`: one small object
 * (about 150 bytes) per call, parsed once with jansson, checked against the
 * field table of messages.h, never allocating beyond jansson's own tree.
 *
 * Only structure is checked here (RULES.md "Rejections": not JSON, unknown
 * type, a missing or mistyped field, an identifier empty or over 64 bytes,
 * a missing ts_ms where the caller must supply it). Values the rules judge
 * (qty 0, start_ms >= end_ms, four commission levels) pass: they go to
 * Kafka and come back as CommandRejected. docs/command-contract.md is the
 * contract this file implements.
 */
#ifndef ORDO_VALIDATE_H
#define ORDO_VALIDATE_H

#include <stddef.h>

#include "err.h"
#include "messages.h"

/* A whole command (one HTTP body, one JSON line) larger than this is
 * refused before it is parsed. */
#define ORDO_COMMAND_MAX_BYTES 65536
/* What a Tick's copy adds to its command_id: "-p" and the partition
 * (send.h); a Tick's command_id is shorter by as much, so that every
 * copy's is an identifier of at most ORDO_ID_MAX bytes. */
#define ORDO_TICK_COPY_SUFFIX_MAX 8

typedef struct ordo_validate_opts_s {
        /* 1: a trusted batch source (`ordo produce --keep-ts`, a gateway key
         * trusted for batch use): ts_ms is required and kept.
         * 0: the producer stamps ts_ms, and a supplied ts_ms is refused
         * (NOT_ALLOWED), so no client can move its order in time. */
        int keep_ts;
        /* 1: the engine's own commands (OpenOrder, ReleaseStock) and a
         * causation_id are accepted, and command_id may be up to
         * ORDO_MSG_ID_MAX bytes: tools that replay what the engine wrote.
         * 0: they are refused (INTERNAL_TYPE, NOT_ALLOWED). */
        int allow_internal;
        /* 1: a PlaceOrder without order_id is accepted with order_id left
         * empty, for the gateway to generate one and return it (issue 6).
         * An order_id that is present is still checked (1..64 bytes).
         * 0: order_id is required, as in RULES.md's command table. */
        int generate_order_id;
        /* 1 (with keep_ts 0): a supplied ts_ms is checked like any field
         * and then stamped over (`ordo produce` without --keep-ts: a file
         * that carries ts_ms is sent as it is, at the current time). */
        int ignore_ts;
        /* 1: a Tick may carry "partition", the one partition it goes to
         * (a line of `ordo replay`, decision 0030), kept in
         * u.tick.to_partition. 0: that field is UNKNOWN_FIELD. */
        int tick_partition;
} ordo_validate_opts_t;

/* A machine-readable copy of the fault, for {"error", "field", "reason"}.
 * field is "" when the fault is not about one field (not JSON, too large).
 * reason is one of:
 *   NOT_JSON, NOT_OBJECT, TOO_LARGE, INVALID_UTF8, NUL_CHAR, DUPLICATE_KEY,
 *   UNKNOWN_TYPE, INTERNAL_TYPE, UNKNOWN_FIELD, NOT_ALLOWED, MISSING,
 *   WRONG_TYPE, EMPTY, TOO_LONG, OUT_OF_RANGE */
typedef struct ordo_field_fault_s {
        char field[64];
        char reason[32];
} ordo_field_fault_t;

/* 1 for the commands only the engine sends (OpenOrder, ReleaseStock). */
int ordo_command_is_internal(ordo_msg_type_t type);

/* Parse one JSON command: an object with "type" and the fields of RULES.md's
 * command table, plus optional command_id, correlation_id and ts_ms (see
 * opts; NULL means all 0). Fills *out with ordo_msg_init() defaults, then
 * the given fields; an absent command_id is left empty (the producer
 * generates it). On ORDO_ERR_OK, errstr is "" and *fault is zeroed.
 *
 * A structural fault returns ORDO_ERR_PARSE (NOT_JSON, NOT_OBJECT,
 * INVALID_UTF8, NUL_CHAR, DUPLICATE_KEY, UNKNOWN_FIELD, NOT_ALLOWED),
 * ORDO_ERR_UNKNOWN_TYPE (UNKNOWN_TYPE, INTERNAL_TYPE),
 * ORDO_ERR_MISSING_FIELD (MISSING, EMPTY), ORDO_ERR_WRONG_TYPE (WRONG_TYPE)
 * or ORDO_ERR_OVERSIZE (TOO_LARGE, TOO_LONG, OUT_OF_RANGE), fills *fault
 * (may be NULL) and writes a one-line message naming the field and the
 * reason to errstr, e.g. `field "qty": expected an integer, got string`.
 * The message is valid UTF-8 with no control characters, safe to log or to
 * put in a JSON answer. *out is then unspecified. ORDO_ERR_INVALID_ARG if
 * json or out is NULL. */
ordo_err_t ordo_validate_command(const char *json, size_t len,
                                 const ordo_validate_opts_t *opts,
                                 ordo_msg_t *out, ordo_field_fault_t *fault,
                                 char *errstr, size_t errstr_size);

#endif
