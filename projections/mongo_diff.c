/*
 * ordo - the MongoDB side of the store diff (store.h: ordo_store_diff,
 * for reconcile): a live database against a rebuilt one, collection by
 * collection in two _id-sorted cursors merged in step, document by
 * document, field by field. The earnings offset guards are not compared.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mongo_conn.h"
#include "projection.h"

static const char *type_name(const bson_iter_t *it) {
        switch (bson_iter_type(it)) {
        case BSON_TYPE_UTF8:
                return "string";
        case BSON_TYPE_INT64:
                return "int64";
        case BSON_TYPE_INT32:
                return "int32";
        case BSON_TYPE_DOUBLE:
                return "double";
        case BSON_TYPE_BOOL:
                return "bool";
        case BSON_TYPE_NULL:
                return "null";
        case BSON_TYPE_DATE_TIME:
                return "date";
        case BSON_TYPE_DOCUMENT:
                return "document";
        case BSON_TYPE_ARRAY:
                return "array";
        default:
                return "other";
        }
}

/* A value as DIFF lines print it: strings quoted and escaped (an id or
 * a name from input cannot end the value or split the line), numbers as
 * they are, anything else as relaxed extended JSON. */
static void bson_value_str(const bson_iter_t *it, char *buf, size_t size) {
        char q[512];
        switch (bson_iter_type(it)) {
        case BSON_TYPE_UTF8:
                snprintf(
                    buf, size, "\"%s\"",
                    ordo_log_quote(q, sizeof(q), bson_iter_utf8(it, NULL)));
                break;
        case BSON_TYPE_INT64:
                snprintf(buf, size, "%lld", (long long)bson_iter_int64(it));
                break;
        case BSON_TYPE_INT32:
                snprintf(buf, size, "%d", (int)bson_iter_int32(it));
                break;
        case BSON_TYPE_DOUBLE:
                snprintf(buf, size, "%.17g", bson_iter_double(it));
                break;
        case BSON_TYPE_BOOL:
                snprintf(buf, size, "%s",
                         bson_iter_bool(it) ? "true" : "false");
                break;
        case BSON_TYPE_NULL:
                snprintf(buf, size, "null");
                break;
        default: {
                bson_t one = BSON_INITIALIZER;
                char *s = NULL;
                if (bson_append_iter(&one, "v", 1, it))
                        s = bson_as_relaxed_extended_json(&one, NULL);
                snprintf(buf, size, "%s", s ? s : "(value)");
                bson_free(s);
                bson_destroy(&one);
        }
        }
}

/* Values differ in text or in BSON type: money stored as a double (917.0)
 * prints as the int64 917 does, and must still show. Then the type goes
 * with each value. */
static int values_differ(const bson_iter_t *e, const bson_iter_t *a, char *ea,
                         size_t ea_size, char *aa, size_t aa_size) {
        int typed = bson_iter_type(e) != bson_iter_type(a);
        size_t n;
        if (!strcmp(ea, aa) && !typed)
                return 0;
        if (typed) {
                n = strlen(ea);
                snprintf(ea + n, ea_size - n, " (%s)", type_name(e));
                n = strlen(aa);
                snprintf(aa + n, aa_size - n, " (%s)", type_name(a));
        }
        return 1;
}

/* Fields the projection keeps for itself: the earnings guards (offsets,
 * refused commission entries). */
static int ignored_field(const char *key) {
        return !strcmp(key, "_id") || !strcmp(key, "offsets") ||
               !strcmp(key, "refused_entries");
}

static void diff_docs(ordo_diff_t *r, const char *coll, const char *id,
                      const bson_t *exp, const bson_t *act) {
        bson_iter_t it, o;
        char a[512], b[512], qid[600];
        int shown = 0;

        ordo_log_quote(qid, sizeof(qid), id);
        if (bson_iter_init(&it, exp))
                while (bson_iter_next(&it)) {
                        const char *k = bson_iter_key(&it);
                        if (ignored_field(k))
                                continue;
                        bson_value_str(&it, a, sizeof(a));
                        if (!bson_iter_init_find(&o, act, k)) {
                                snprintf(b, sizeof(b), "(absent)");
                        } else {
                                bson_value_str(&o, b, sizeof(b));
                                if (!values_differ(&it, &o, a, sizeof(a), b,
                                                   sizeof(b)))
                                        continue;
                        }
                        ordo_diff_line(r,
                                       "DIFF mongo %s _id=\"%s\" field=%s "
                                       "expected=%s actual=%s",
                                       coll, qid, k, a, b);
                        shown++;
                }
        if (bson_iter_init(&it, act))
                while (bson_iter_next(&it)) {
                        const char *k = bson_iter_key(&it);
                        if (ignored_field(k) || bson_iter_init_find(&o, exp, k))
                                continue;
                        bson_value_str(&it, b, sizeof(b));
                        ordo_diff_line(r,
                                       "DIFF mongo %s _id=\"%s\" field=%s "
                                       "expected=(absent) actual=%s",
                                       coll, qid, k, b);
                        shown++;
                }
        if (shown)
                r->diffs++;
}

static const char *doc_id(const bson_t *d, char *buf, size_t size) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, d, "_id")) {
                if (BSON_ITER_HOLDS_UTF8(&it))
                        snprintf(buf, size, "%s", bson_iter_utf8(&it, NULL));
                else
                        bson_value_str(&it, buf, size);
        } else
                buf[0] = '\0';
        return buf;
}

static mongoc_cursor_t *sorted(mongoc_client_t *c, const char *db,
                               const char *coll, mongoc_collection_t **out) {
        bson_t filter = BSON_INITIALIZER;
        bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}",
                                "batchSize", BCON_INT32(1000));
        mongoc_cursor_t *cur;
        *out = mongoc_client_get_collection(c, db, coll);
        cur = mongoc_collection_find_with_opts(*out, &filter, opts, NULL);
        bson_destroy(opts);
        return cur;
}

static const bson_t *cursor_next(mongoc_cursor_t *c, ordo_diff_t *r,
                                 const char *what) {
        const bson_t *d;
        bson_error_t e;
        if (mongoc_cursor_next(c, &d))
                return d;
        if (mongoc_cursor_error(c, &e)) {
                fprintf(stderr, "ordo reconcile: mongo %s: %s\n", what,
                        e.message);
                r->errors++;
        }
        return NULL;
}

ordo_err_t ordo_mongo_diff(const char *uri_str, const char *live,
                           const char *tmp, ordo_diff_t *r, char *errstr,
                           size_t errstr_size) {
        static const char *colls[] = { "activities", "orders", "commissions",
                                       "earnings", "referrals" };
        mongoc_client_t *c;
        size_t i;

        c = ordo_mongo_client(uri_str, &ordo_mongo_waits_retrying,
                              "ordo-reconcile", errstr, errstr_size);
        if (!c)
                return ORDO_ERR_CONFIG;
        for (i = 0; i < 5 && !ordo_diff_stopped(r); i++) {
                mongoc_collection_t *ce, *ca;
                mongoc_cursor_t *xe = sorted(c, tmp, colls[i], &ce);
                mongoc_cursor_t *xa = sorted(c, live, colls[i], &ca);
                const bson_t *de = cursor_next(xe, r, "rebuilt");
                const bson_t *da = cursor_next(xa, r, "live");
                char ie[300], ia[300], prev_e[300] = "", prev_a[300] = "",
                                       q[600];
                while ((de || da) && !ordo_diff_stopped(r)) {
                        int cmp;
                        if (de)
                                doc_id(de, ie, sizeof(ie));
                        if (da)
                                doc_id(da, ia, sizeof(ia));
                        /* The merge needs the server's order to be
                         * strcmp's (the simple collation): check it. */
                        if ((de && strcmp(prev_e, ie) > 0) ||
                            (da && strcmp(prev_a, ia) > 0)) {
                                fprintf(stderr,
                                        "ordo reconcile: mongo %s: _id "
                                        "order is not bytewise; cannot "
                                        "merge\n",
                                        colls[i]);
                                r->errors++;
                                break;
                        }
                        cmp = !de ? 1 : !da ? -1 : strcmp(ie, ia);
                        if (cmp < 0) {
                                r->diffs++;
                                ordo_diff_line(
                                    r,
                                    "DIFF mongo %s _id=\"%s\" missing: "
                                    "in the rebuild from the event "
                                    "log, not in %s",
                                    colls[i], ordo_log_quote(q, sizeof(q), ie),
                                    live);
                        } else if (cmp > 0) {
                                r->diffs++;
                                ordo_diff_line(
                                    r,
                                    "DIFF mongo %s _id=\"%s\" extra: in "
                                    "%s, not in the rebuild from the "
                                    "event log",
                                    colls[i], ordo_log_quote(q, sizeof(q), ia),
                                    live);
                        } else {
                                r->compared++;
                                diff_docs(r, colls[i], ie, de, da);
                        }
                        if (cmp <= 0) {
                                snprintf(prev_e, sizeof(prev_e), "%s", ie);
                                de = cursor_next(xe, r, "rebuilt");
                        }
                        if (cmp >= 0) {
                                snprintf(prev_a, sizeof(prev_a), "%s", ia);
                                da = cursor_next(xa, r, "live");
                        }
                }
                mongoc_cursor_destroy(xe);
                mongoc_cursor_destroy(xa);
                mongoc_collection_destroy(ce);
                mongoc_collection_destroy(ca);
        }
        mongoc_client_destroy(c);
        return ORDO_ERR_OK;
}
