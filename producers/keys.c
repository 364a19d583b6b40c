#include "keys.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

_Static_assert(ORDO_MSG__COUNT <= 64, "scopes are one bit per type");

struct ordo_keyset_s {
        atomic_int refs;
        size_t n;
        ordo_key_t *keys;
};

/* The types a client may send through the gateway: commands, not the
 * engine's own (OpenOrder, ReleaseStock) and not Tick (`ordo tick`). */
static int sendable(ordo_msg_type_t t) {
        return t != ORDO_MSG_NONE && t != ORDO_MSG_TICK &&
               !ordo_msg_is_event(t) && !ordo_command_is_internal(t);
}

static uint64_t all_scopes(void) {
        uint64_t s = 0;
        int t;
        for (t = 1; t < ORDO_MSG__COUNT; t++)
                if (sendable((ordo_msg_type_t)t))
                        s |= (uint64_t)1 << t;
        return s;
}

/* "scope=A,B" or "scope=*" into k; -1 on an unknown or unsendable type. */
static int parse_scopes(const char *list, ordo_key_t *k, char *bad,
                        size_t bad_size) {
        char buf[512], *tok, *save = NULL;

        k->scoped = 1;
        if (!strcmp(list, "*")) {
                k->scopes = all_scopes();
                return 0;
        }
        ordo_strlcpy(buf, list, sizeof(buf));
        for (tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
                ordo_msg_type_t t = ordo_msg_type_from_name(tok);
                if (!sendable(t)) {
                        ordo_strlcpy(bad, tok, bad_size);
                        return -1;
                }
                k->scopes |= (uint64_t)1 << t;
        }
        if (!k->scopes) {
                ordo_strlcpy(bad, "(empty)", bad_size);
                return -1;
        }
        return 0;
}

static void keyset_free(ordo_keyset_t *ks) {
        if (!ks)
                return;
        if (ks->keys)
                memset(ks->keys, 0, ks->n * sizeof(*ks->keys));
        free(ks->keys);
        free(ks);
}

/* One non-blank, non-comment line into k; -1 with errstr. */
static int parse_line(char *line, const char *name, int lineno, ordo_key_t *k,
                      char *errstr, size_t errstr_size) {
        char *tok, *save = NULL, bad[80] = "";
        int n = 0;

        memset(k, 0, sizeof(*k));
        for (tok = strtok_r(line, " \t\r\n", &save); tok;
             tok = strtok_r(NULL, " \t\r\n", &save), n++) {
                if (n == 0 && strlen(tok) <= ORDO_ID_MAX)
                        ordo_strlcpy(k->id, tok, sizeof(k->id));
                else if (n == 1 && strlen(tok) < sizeof(k->secret))
                        ordo_strlcpy(k->secret, tok, sizeof(k->secret));
                else if (n >= 2 && !strcmp(tok, "batch") && !k->trusted)
                        k->trusted = 1;
                else if (n >= 2 && !strncmp(tok, "scope=", 6) && !k->scoped) {
                        if (parse_scopes(tok + 6, k, bad, sizeof(bad)))
                                break;
                } else
                        break;
        }
        if (!tok && n >= 2)
                return 0;
        /* Never echo the line: it holds a secret. */
        if (bad[0])
                snprintf(errstr, errstr_size,
                         "%s:%d: scope %.64s is not a command a client may "
                         "send (CreateActivity, PlaceOrder, CancelOrder, "
                         "ConfirmPayment, ConfirmReceipt, RefundOrder, "
                         "BindReferrer, or * for all)",
                         name, lineno, bad);
        else
                snprintf(errstr, errstr_size,
                         "%s:%d: %s; expected \"key_id secret [batch] "
                         "[scope=Type,...]\"",
                         name, lineno,
                         n == 0 ? "key_id over 64 bytes"
                         : n == 1
                             ? (tok ? "secret over 255 bytes" : "no secret")
                             : "a word after the secret is neither "
                               "batch nor scope= (or is repeated)");
        return -1;
}

ordo_keyset_t *ordo_keyset_parse(const char *text, const char *name,
                                 char *errstr, size_t errstr_size) {
        ordo_keyset_t *ks = calloc(1, sizeof(*ks));
        size_t cap = 0, i;
        int lineno = 0;
        const char *p = text;

        if (!ks) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        atomic_init(&ks->refs, 1);
        while (*p) {
                char line[1024];
                size_t len = strcspn(p, "\n"), skip;
                ordo_key_t k;

                lineno++;
                if (len >= sizeof(line)) {
                        snprintf(errstr, errstr_size,
                                 "%s:%d: line over %zu bytes", name, lineno,
                                 sizeof(line) - 1);
                        goto fail;
                }
                memcpy(line, p, len);
                line[len] = '\0';
                p += len + (p[len] == '\n');
                skip = strspn(line, " \t\r");
                if (!line[skip] || line[skip] == '#')
                        continue;
                if (parse_line(line, name, lineno, &k, errstr, errstr_size))
                        goto fail;
                for (i = 0; i < ks->n; i++)
                        if (!strcmp(ks->keys[i].id, k.id)) {
                                snprintf(errstr, errstr_size,
                                         "%s:%d: key %s is listed twice", name,
                                         lineno, k.id);
                                goto fail;
                        }
                if (!k.scoped)
                        k.scopes = all_scopes();
                if (ks->n == cap) {
                        ordo_key_t *a;
                        cap = cap ? cap * 2 : 8;
                        if (!(a = realloc(ks->keys, cap * sizeof(*a)))) {
                                snprintf(errstr, errstr_size, "out of memory");
                                goto fail;
                        }
                        ks->keys = a;
                }
                ks->keys[ks->n++] = k;
                memset(&k, 0, sizeof(k));
        }
        if (!ks->n) {
                snprintf(errstr, errstr_size,
                         "%s has no key; leave ingest.keys.file empty to "
                         "turn authentication off",
                         name);
                goto fail;
        }
        return ks;
fail:
        keyset_free(ks);
        return NULL;
}

ordo_keyset_t *ordo_keyset_load(const char *path, char *errstr,
                                size_t errstr_size) {
        FILE *f = fopen(path, "r");
        char *text = NULL;
        size_t size = 0, n;
        ordo_keyset_t *ks = NULL;

        if (!f) {
                snprintf(errstr, errstr_size, "ingest.keys.file %s: %s", path,
                         strerror(errno));
                return NULL;
        }
        /* Small file: read it whole (at most 1 MiB). */
        if ((text = calloc(1, 1 << 20)))
                size = fread(text, 1, (1 << 20) - 1, f);
        n = size;
        if (!text)
                snprintf(errstr, errstr_size, "out of memory");
        else if (ferror(f))
                snprintf(errstr, errstr_size, "ingest.keys.file %s: read error",
                         path);
        else if (!feof(f))
                snprintf(errstr, errstr_size, "ingest.keys.file %s: over 1 MiB",
                         path);
        else
                ks = ordo_keyset_parse(text, path, errstr, errstr_size);
        fclose(f);
        if (text) {
                memset(text, 0, n);
                free(text);
        }
        return ks;
}

ordo_keyset_t *ordo_keyset_ref(ordo_keyset_t *ks) {
        if (ks)
                atomic_fetch_add(&ks->refs, 1);
        return ks;
}

void ordo_keyset_release(ordo_keyset_t *ks) {
        if (ks && atomic_fetch_sub(&ks->refs, 1) == 1)
                keyset_free(ks);
}

size_t ordo_keyset_count(const ordo_keyset_t *ks) {
        return ks ? ks->n : 0;
}

const ordo_key_t *ordo_keyset_at(const ordo_keyset_t *ks, size_t i) {
        return ks && i < ks->n ? &ks->keys[i] : NULL;
}

const ordo_key_t *ordo_keyset_find(const ordo_keyset_t *ks, const char *id) {
        size_t i;
        for (i = 0; ks && id && i < ks->n; i++)
                if (!strcmp(ks->keys[i].id, id))
                        return &ks->keys[i];
        return NULL;
}

int ordo_key_allows(const ordo_key_t *k, ordo_msg_type_t type) {
        return type > 0 && type < ORDO_MSG__COUNT && (k->scopes >> type & 1);
}

char *ordo_key_scopes_str(const ordo_key_t *k, char *out, size_t size) {
        size_t len = 0;
        int t;

        out[0] = '\0';
        if (k->scopes == all_scopes()) {
                ordo_strlcpy(out, "*", size);
                return out;
        }
        for (t = 1; t < ORDO_MSG__COUNT; t++)
                if (k->scopes >> t & 1) {
                        int w = snprintf(
                            out + len, size - len, "%s%s", len ? "," : "",
                            ordo_msg_type_name((ordo_msg_type_t)t));
                        if (w < 0 || (size_t)w >= size - len)
                                break;
                        len += (size_t)w;
                }
        return out;
}
