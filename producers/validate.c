/*
 * ordo - structural validation of JSON commands (see validate.h and
 * docs/command-contract.md).
 *
 * jansson does the parsing (json_flat.c takes the common flat shape
 * first, to the same tree) and already refuses much of what we must:
 * invalid UTF-8, "\u0000" (without JSON_ALLOW_NUL), duplicate keys (with
 * JSON_REJECT_DUPLICATES), integers outside int64. What it cannot tell us
 * is which field was at fault, so a parse error is traced back to the
 * top-level key it happened under (key_at()). The rest walks the object
 * once against the field table of messages.h: no field list is repeated
 * here.
 */
#include "validate.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "json_flat.h"
#include "json_out.h"

typedef struct fault_ctx_s {
        ordo_field_fault_t *fault;
        char *errstr;
        size_t errstr_size;
} fault_ctx_t;

/* The code point of a valid UTF-8 sequence of seq bytes. */
static uint32_t code_point(const unsigned char *u, size_t seq) {
        static const unsigned char lead[] = { 0, 0x7F, 0x1F, 0x0F, 0x07 };
        uint32_t c = u[0] & lead[seq];
        size_t k;
        for (k = 1; k < seq; k++)
                c = c << 6 | (u[k] & 0x3F);
        return c;
}

/* A code point that prints nothing and can change how the rest reads:
 * C1 controls (U+0085 ends a line to some readers, U+009B starts a
 * terminal sequence), the soft hyphen, combining and filler characters
 * that show as blank, zero-width and direction marks (U+061C, U+200E),
 * the line and paragraph separators, bidi overrides and isolates, the
 * BOM, interlinear annotations, tag characters. */
static int invisible(uint32_t c) {
        return (c >= 0x80 && c <= 0x9F) || c == 0xAD || c == 0x34F ||
               c == 0x61C || c == 0x115F || c == 0x1160 ||
               (c >= 0x17B4 && c <= 0x17B5) || (c >= 0x180B && c <= 0x180F) ||
               (c >= 0x200B && c <= 0x200F) || (c >= 0x2028 && c <= 0x202E) ||
               (c >= 0x2060 && c <= 0x206F) || c == 0x3164 || c == 0xFEFF ||
               c == 0xFFA0 || (c >= 0xFFF0 && c <= 0xFFFB) ||
               (c >= 0xE0000 && c <= 0xE0FFF);
}

/* Replace what is not printable UTF-8 (control bytes, broken or truncated
 * sequences, invisible()) with one '?' each, in place: messages echo
 * client input and end up in logs, terminals and JSON answers. */
static void make_printable(char *s) {
        unsigned char *u = (unsigned char *)s;
        size_t n = strlen(s), i = 0, seq;

        while (i < n) {
                uint32_t c;
                seq = ordo__utf8_seq(u + i, n - i);
                if (seq == 0 || (seq == 1 && (u[i] < 0x20 || u[i] == 0x7F))) {
                        u[i++] = '?';
                        continue;
                }
                c = code_point(u + i, seq);
                if (invisible(c)) {
                        u[i] = '?';
                        memmove(u + i + 1, u + i + seq, n - i - seq + 1);
                        n -= seq - 1;
                        seq = 1;
                }
                i += seq;
        }
}

/* Copy at most size - 1 bytes of src[0..len), cut at a UTF-8 boundary,
 * printable. */
static void copy_printable(char *dst, size_t size, const char *src,
                           size_t len) {
        if (len > size - 1) {
                len = size - 1;
                /* not inside a character: back to its first byte */
                while (len > 0 && ((unsigned char)src[len] & 0xC0) == 0x80)
                        len--;
        }
        memcpy(dst, src, len);
        dst[len] = '\0';
        make_printable(dst);
}

static ordo_err_t fail(fault_ctx_t *c, ordo_err_t err, const char *field,
                       const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static ordo_err_t fail(fault_ctx_t *c, ordo_err_t err, const char *field,
                       const char *reason, const char *fmt, ...) {
        char name[sizeof(c->fault->field)];
        va_list ap;
        int n = 0;

        copy_printable(name, sizeof(name), field, strlen(field));
        if (c->fault) {
                memcpy(c->fault->field, name, sizeof(name));
                ordo_strlcpy(c->fault->reason, reason,
                             sizeof(c->fault->reason));
        }
        if (!c->errstr || c->errstr_size == 0)
                return err;
        if (*name)
                n = snprintf(c->errstr, c->errstr_size, "field \"%s\": ", name);
        if (n >= 0 && (size_t)n < c->errstr_size) {
                va_start(ap, fmt);
                vsnprintf(c->errstr + n, c->errstr_size - (size_t)n, fmt, ap);
                va_end(ap);
        }
        make_printable(c->errstr);
        return err;
}

/* The JSON string of len bytes at s (quotes included), decoded, into
 * key; its raw text if it does not decode. */
static void decoded_key(const char *s, size_t len, char *key, size_t size) {
        json_t *v = json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

        if (json_is_string(v))
                copy_printable(key, size, json_string_value(v),
                               json_string_length(v));
        else
                copy_printable(key, size, s + 1, len - 2);
        json_decref(v);
}

/* The top-level key under which byte pos of the text lies, into key; ""
 * if none (the fault is outside any member, or inside a key itself).
 * Returns 1 if pos lies inside a string. The text before pos is valid
 * JSON so far: jansson got that far. */
static int key_at(const char *s, size_t pos, char *key, size_t size) {
        size_t i, j, start = 0, klen = 0;
        int depth = 0, in_object = 0, expect_key = 0, in_string = 0;

        key[0] = '\0';
        for (i = 0; i < pos; i++) {
                char ch = s[i];
                if (ch == '"') {
                        for (j = i + 1; j < pos && s[j] != '"'; j++)
                                if (s[j] == '\\')
                                        j++;
                        if (j >= pos) { /* the fault is in this string */
                                if (depth == 1 && expect_key)
                                        klen = 0;
                                in_string = 1;
                                break;
                        }
                        if (depth == 1 && expect_key) {
                                start = i + 1;
                                klen = j - start;
                                expect_key = 0;
                        }
                        i = j;
                } else if (ch == '{' || ch == '[') {
                        if (++depth == 1) {
                                in_object = ch == '{';
                                expect_key = in_object;
                        }
                } else if (ch == '}' || ch == ']') {
                        if (--depth == 0)
                                klen = 0; /* past the object */
                } else if (ch == ',' && depth == 1 && in_object) {
                        expect_key = 1;
                        klen = 0; /* between members */
                }
        }
        if (klen && !memchr(s + start, '\\', klen))
                copy_printable(key, size, s + start, klen);
        else if (klen) /* escaped: the name as the member has it */
                decoded_key(s + start - 1, klen + 2, key, size);
        return in_string;
}

static ordo_err_t parse_fault(fault_ctx_t *c, const char *json, size_t len,
                              const json_error_t *e) {
        char key[sizeof(c->fault->field)];
        size_t pos = e->position < 0 ? 0 : (size_t)e->position;
        int in_string;

        if (pos > len)
                pos = len;
        in_string = key_at(json, pos, key, sizeof(key));
        switch (json_error_code(e)) {
        case json_error_numeric_overflow:
                return fail(c, ORDO_ERR_OVERSIZE, key, "OUT_OF_RANGE",
                            "number out of range (%s); integers must fit "
                            "in int64",
                            e->text);
        case json_error_invalid_utf8:
                /* A stray byte between tokens is bad syntax, not a bad
                 * string: NOT_JSON below. */
                if (!in_string)
                        break;
                return fail(c, ORDO_ERR_PARSE, key, "INVALID_UTF8",
                            "invalid UTF-8 at byte %zu", pos);
        case json_error_null_byte_in_key:
                key[0] = '\0'; /* the key itself is at fault */
                /* fall through */
        case json_error_null_character:
                return fail(c, ORDO_ERR_PARSE, key, "NUL_CHAR",
                            "\\u0000 is not allowed in a string");
        case json_error_duplicate_key:
                return fail(c, ORDO_ERR_PARSE, key, "DUPLICATE_KEY",
                            "duplicate key");
        case json_error_invalid_syntax:
                /* A lone UTF-16 surrogate escape ("\ud800") encodes no
                 * character: the same fault as invalid UTF-8. */
                if (!strncmp(e->text, "invalid Unicode", 15)) {
                        /* jansson says so past the string's closing
                         * quote: a key's own fault when a ':' follows */
                        size_t q = pos;
                        while (q < len && isspace((unsigned char)json[q]))
                                q++;
                        if (q < len && json[q] == ':')
                                key[0] = '\0';
                        return fail(c, ORDO_ERR_PARSE, key, "INVALID_UTF8",
                                    "invalid Unicode escape at byte %zu", pos);
                }
                break;
        default:
                break;
        }
        return fail(c, ORDO_ERR_PARSE, "", "NOT_JSON",
                    "not JSON: %s at line %d column %d", e->text, e->line,
                    e->column);
}

static const char *json_type_name(const json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return "object";
        case JSON_ARRAY:
                return "array";
        case JSON_STRING:
                return "string";
        case JSON_INTEGER:
                return "integer";
        case JSON_REAL:
                return "float";
        case JSON_TRUE:
        case JSON_FALSE:
                return "boolean";
        default:
                return "null";
        }
}

int ordo_command_is_internal(ordo_msg_type_t type) {
        return type == ORDO_MSG_OPEN_ORDER || type == ORDO_MSG_RELEASE_STOCK;
}

static ordo_err_t store_string(fault_ctx_t *c, const ordo_field_t *f,
                               const json_t *v, size_t max, size_t min,
                               ordo_msg_t *out) {
        size_t n;

        if (!json_is_string(v))
                return fail(c, ORDO_ERR_WRONG_TYPE, f->name, "WRONG_TYPE",
                            "expected a string, got %s", json_type_name(v));
        n = json_string_length(v);
        if (n < min)
                return fail(c, ORDO_ERR_MISSING_FIELD, f->name, "EMPTY",
                            "empty");
        if (n > max)
                return fail(c, ORDO_ERR_OVERSIZE, f->name, "TOO_LONG",
                            "%zu bytes, at most %zu", n, max);
        /* jansson refused "\u0000", so the length is the C length. */
        memcpy((char *)out + f->offset, json_string_value(v), n + 1);
        return ORDO_ERR_OK;
}

static ordo_err_t store_longs(fault_ctx_t *c, const ordo_field_t *f,
                              const json_t *v, ordo_msg_t *out) {
        int64_t vals[ORDO_LEVELS_WIRE] = { 0 };
        int32_t count;
        size_t i;

        if (!json_is_array(v))
                return fail(c, ORDO_ERR_WRONG_TYPE, f->name, "WRONG_TYPE",
                            "expected an array of integers, got %s",
                            json_type_name(v));
        if (json_array_size(v) > ORDO_LEVELS_WIRE)
                return fail(c, ORDO_ERR_OVERSIZE, f->name, "TOO_LONG",
                            "%zu elements, at most %d", json_array_size(v),
                            ORDO_LEVELS_WIRE);
        for (i = 0; i < json_array_size(v); i++) {
                const json_t *e = json_array_get(v, i);
                if (!json_is_integer(e))
                        return fail(c, ORDO_ERR_WRONG_TYPE, f->name,
                                    "WRONG_TYPE",
                                    "element %zu: expected an integer, got %s",
                                    i, json_type_name(e));
                vals[i] = json_integer_value(e);
        }
        count = (int32_t)json_array_size(v);
        memcpy((char *)out + f->offset, vals, sizeof(vals));
        memcpy((char *)out + f->count_offset, &count, sizeof(count));
        return ORDO_ERR_OK;
}

static ordo_err_t store(fault_ctx_t *c, const ordo_field_t *f, const json_t *v,
                        const ordo_validate_opts_t *o, ordo_msg_t *out) {
        int64_t l;
        int32_t b;

        switch (f->kind) {
        case ORDO_FIELD_STRING:
                /* command_id is an identifier (RULES.md: 1..64 bytes);
                 * the engine's own may be longer, up to the buffer. A
                 * Tick's copies add "-p<partition>" to it (send.h). */
                if (!strcmp(f->name, "command_id"))
                        return store_string(c, f, v,
                                            o->allow_internal ? f->size - 1
                                            : out->type == ORDO_MSG_TICK
                                                ? ORDO_ID_MAX -
                                                      ORDO_TICK_COPY_SUFFIX_MAX
                                                : ORDO_ID_MAX,
                                            1, out);
                return store_string(c, f, v, f->size - 1, (size_t)f->min_len,
                                    out);
        case ORDO_FIELD_LONG:
                if (!json_is_integer(v))
                        return fail(c, ORDO_ERR_WRONG_TYPE, f->name,
                                    "WRONG_TYPE", "expected an integer, got %s",
                                    json_type_name(v));
                l = json_integer_value(v);
                /* ms since the epoch (RULES.md "Units"); before it, a
                 * batch's deadlines and windows would be nonsense */
                if (l < 0 && o->keep_ts && !strcmp(f->name, "ts_ms"))
                        return fail(c, ORDO_ERR_OVERSIZE, f->name,
                                    "OUT_OF_RANGE",
                                    "%lld is before 1970: ms since the Unix "
                                    "epoch cannot be negative",
                                    (long long)l);
                memcpy((char *)out + f->offset, &l, sizeof(l));
                return ORDO_ERR_OK;
        case ORDO_FIELD_BOOL:
                if (!json_is_boolean(v))
                        return fail(c, ORDO_ERR_WRONG_TYPE, f->name,
                                    "WRONG_TYPE",
                                    "expected true or false, got %s",
                                    json_type_name(v));
                b = json_is_true(v);
                memcpy((char *)out + f->offset, &b, sizeof(b));
                return ORDO_ERR_OK;
        case ORDO_FIELD_LONGS:
                return store_longs(c, f, v, out);
        }
        return ORDO_ERR_INVALID_ARG;
}

static ordo_err_t check_type(fault_ctx_t *c, const json_t *root,
                             const ordo_validate_opts_t *o,
                             ordo_msg_type_t *type) {
        const json_t *v = json_object_get(root, "type");
        const char *name;

        if (!v)
                return fail(c, ORDO_ERR_MISSING_FIELD, "type", "MISSING",
                            "missing");
        if (!json_is_string(v))
                return fail(c, ORDO_ERR_WRONG_TYPE, "type", "WRONG_TYPE",
                            "expected a string, got %s", json_type_name(v));
        name = json_string_value(v);
        *type = ordo_msg_type_from_name(name);
        if (*type == ORDO_MSG_NONE)
                return fail(c, ORDO_ERR_UNKNOWN_TYPE, "type", "UNKNOWN_TYPE",
                            "unknown command \"%.40s\"", name);
        if (ordo_msg_is_event(*type))
                return fail(c, ORDO_ERR_UNKNOWN_TYPE, "type", "UNKNOWN_TYPE",
                            "\"%s\" is an event, not a command", name);
        if (ordo_command_is_internal(*type) && !o->allow_internal)
                return fail(c, ORDO_ERR_UNKNOWN_TYPE, "type", "INTERNAL_TYPE",
                            "\"%s\" is sent by the engine only", name);
        return ORDO_ERR_OK;
}

static const ordo_field_t *find_field(const ordo_field_t *fields, size_t n,
                                      const char *name, size_t *idx) {
        size_t i;
        for (i = 0; i < n; i++)
                if (!strcmp(fields[i].name, name)) {
                        *idx = i;
                        return &fields[i];
                }
        return NULL;
}

/* A replayed Tick's partition (decision 0030): 0..ORDO_TICK_PARTITION_MAX;
 * whether the topic has it is known when it is sent (send.h). */
#define ORDO_TICK_PARTITION_MAX 100000
static ordo_err_t tick_partition(fault_ctx_t *c, const json_t *v,
                                 ordo_msg_t *out) {
        if (!json_is_integer(v))
                return fail(c, ORDO_ERR_WRONG_TYPE, "partition", "WRONG_TYPE",
                            "expected an integer, got %s", json_type_name(v));
        if (json_integer_value(v) < 0 ||
            json_integer_value(v) > ORDO_TICK_PARTITION_MAX)
                return fail(c, ORDO_ERR_PARSE, "partition", "OUT_OF_RANGE",
                            "must be 0..%d", ORDO_TICK_PARTITION_MAX);
        out->u.tick.to_partition = (int32_t)json_integer_value(v) + 1;
        return ORDO_ERR_OK;
}

static ordo_err_t check_fields(fault_ctx_t *c, json_t *root,
                               const ordo_validate_opts_t *o, ordo_msg_t *out) {
        const ordo_field_t *fields, *f;
        const char *key;
        json_t *v;
        size_t n, i;
        uint64_t seen = 0;
        ordo_err_t err;

        fields = ordo_msg_fields(out->type, &n);
        json_object_foreach(root, key, v) {
                if (!strcmp(key, "type"))
                        continue;
                f = find_field(fields, n, key, &i);
                if (!f && o->tick_partition && out->type == ORDO_MSG_TICK &&
                    !strcmp(key, "partition")) {
                        if ((err = tick_partition(c, v, out)))
                                return err;
                        continue;
                }
                if (!f)
                        return fail(c, ORDO_ERR_PARSE, key, "UNKNOWN_FIELD",
                                    "unknown field of %s",
                                    ordo_msg_type_name(out->type));
                if (!o->keep_ts && !o->ignore_ts && !strcmp(key, "ts_ms"))
                        return fail(c, ORDO_ERR_PARSE, key, "NOT_ALLOWED",
                                    "not allowed from this source (the "
                                    "producer stamps it)");
                /* "" is the .avsc's "none": what `ordo replay` prints
                 * for a command from outside, so its output can be
                 * produced again. */
                if (!o->allow_internal && !strcmp(key, "causation_id") &&
                    !(json_is_string(v) && !json_string_length(v)))
                        return fail(c, ORDO_ERR_PARSE, key, "NOT_ALLOWED",
                                    "not allowed from this source (set by "
                                    "the engine)");
                if ((err = store(c, f, v, o, out)))
                        return err;
                if (i < 64)
                        seen |= UINT64_C(1) << i;
        }
        for (i = 0; i < n && i < 64; i++) {
                if (seen & (UINT64_C(1) << i))
                        continue;
                if (fields[i].required &&
                    !(o->generate_order_id &&
                      out->type == ORDO_MSG_PLACE_ORDER &&
                      !strcmp(fields[i].name, "order_id")))
                        return fail(c, ORDO_ERR_MISSING_FIELD, fields[i].name,
                                    "MISSING", "missing");
                if (o->keep_ts && !strcmp(fields[i].name, "ts_ms"))
                        return fail(c, ORDO_ERR_MISSING_FIELD, "ts_ms",
                                    "MISSING",
                                    "missing (this source must supply it)");
        }
        return ORDO_ERR_OK;
}

ordo_err_t ordo_validate_command(const char *json, size_t len,
                                 const ordo_validate_opts_t *opts,
                                 ordo_msg_t *out, ordo_field_fault_t *fault,
                                 char *errstr, size_t errstr_size) {
        static const ordo_validate_opts_t defaults = { 0, 0, 0, 0, 0 };
        fault_ctx_t c = { fault, errstr, errstr_size };
        const ordo_validate_opts_t *o = opts ? opts : &defaults;
        ordo_msg_type_t type = ORDO_MSG_NONE;
        json_error_t jerr;
        json_t *root;
        const char *nul;
        ordo_err_t err;

        if (fault)
                memset(fault, 0, sizeof(*fault));
        if (errstr && errstr_size)
                errstr[0] = '\0';
        if (!json || !out)
                return fail(&c, ORDO_ERR_INVALID_ARG, "", "NOT_JSON",
                            "no input");
        /* Before parsing: a flood of huge bodies must cost nothing. */
        if (len > ORDO_COMMAND_MAX_BYTES)
                return fail(&c, ORDO_ERR_OVERSIZE, "", "TOO_LARGE",
                            "command is %zu bytes, at most %d", len,
                            ORDO_COMMAND_MAX_BYTES);
        if (ordo_json_blank(json, len))
                return fail(&c, ORDO_ERR_PARSE, "", "NOT_JSON",
                            "not JSON: empty input");
        /* A raw NUL is never JSON, and jansson's number lexer stops at
         * one ("7\0" reads as 7): refused before either parser sees it. */
        if ((nul = memchr(json, '\0', len)))
                return fail(&c, ORDO_ERR_PARSE, "", "NOT_JSON",
                            "not JSON: a raw NUL byte at byte %zu",
                            (size_t)(nul - json));
        /* the common shape without jansson's lexer; the rest, and every
         * fault, through jansson */
        root = ordo_json_flat_parse(json, len);
        if (!root)
                root = json_loadb(
                    json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
        if (!root)
                return parse_fault(&c, json, len, &jerr);
        if (!json_is_object(root)) {
                err = fail(&c, ORDO_ERR_PARSE, "", "NOT_OBJECT",
                           "expected a JSON object, got %s",
                           json_type_name(root));
                json_decref(root);
                return err;
        }
        err = check_type(&c, root, o, &type);
        if (!err) {
                ordo_msg_init(out, type);
                err = check_fields(&c, root, o, out);
        }
        json_decref(root);
        return err;
}
