/*
 * ordo reconcile: re-run the rules over the input topics in memory,
 * compare with the stored event topics, then rebuild both read models into
 * temporary targets and compare them with the live ones. Every difference
 * is printed; the exit status is 1 if there is any.
 *
 * Workload: topics of millions of messages on one machine. Everything is
 * streamed: one input partition at a time with a fresh state, the stored
 * event partition read in step with it, documents and keys compared in
 * sorted cursors and SCAN batches (store.h: ordo_store_diff). Memory is the rules' state of one
 * partition plus one batch.
 *
 * Events are aligned by their id, "<source>-<partition>-<offset>-<index>"
 * (rules.h: derived from the input's position), not by their place in
 * the topic, so one missing or extra event is one difference, not a shift
 * of everything after it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "commands.h"
#include "kafka.h"
#include "kafka_io.h"
#include "projection.h"
#include "rebuild.h"
#include "stages.h"
#include "store.h"

#define ENCODE_MAX 8192

enum { SEC_EVENTS, SEC_MONGO, SEC_REDIS, SEC__N };
static const char *sec_names[SEC__N] = { "events", "mongo", "redis" };

typedef struct {
        int64_t limit;   /* lines printed at most; < 0: all */
        int64_t printed; /* lines printed */
        int64_t diffs[SEC__N];
        int64_t notes[SEC__N];
        int64_t compared[SEC__N]; /* events, documents, keys compared */
        int64_t inputs;           /* input messages re-decided */
        int64_t commission_diffs;
        int64_t foreign; /* extras no processor writes there (report_extra) */
        int64_t copies;  /* extras naming an input decided before them */
        int errors;      /* could not compare something */
} report_t;

static void vline(void *opaque, const char *fmt, va_list ap) {
        report_t *r = opaque;
        if (r->limit >= 0 && r->printed >= r->limit) {
                if (r->printed == r->limit)
                        printf("... (--limit %lld reached; counting "
                               "continues)\n",
                               (long long)r->limit);
                r->printed++;
                return;
        }
        vprintf(fmt, ap);
        putchar('\n');
        r->printed++;
}

static void line(report_t *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void line(report_t *r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vline(r, fmt, ap);
        va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Events */

/* A stored or expected event: its decoded form and its position key. */
typedef struct {
        ordo_msg_t msg;
        int64_t in_offset; /* the input offset its id names; -1: foreign */
        int64_t index;
} ev_t;

typedef struct {
        ev_t *v;
        size_t n, cap;
        int oom;
} ev_list_t;

typedef struct {
        ordo_kafka_reader_t in; /* the stored event partition */
        ordo_codec_t *codec;
        /* the message in hand */
        rd_kafka_message_t *m;
        ev_t ev;
        int decoded;
        char why[256];
} reader_t;

/* Parses "<source>-<partition>-<offset>-<index>"; -1 if the id is not
 * of that form for this source and partition. */
static void parse_id(ev_t *e, const char *source, int32_t partition) {
        char head[160];
        const char *id = e->msg.meta.id, *rest;
        char *end;
        long long off, idx;
        e->in_offset = -1;
        e->index = -1;
        snprintf(head, sizeof(head), "%s-%d-", source, (int)partition);
        if (strncmp(id, head, strlen(head)))
                return;
        rest = id + strlen(head);
        off = strtoll(rest, &end, 10);
        if (end == rest || *end != '-')
                return;
        rest = end + 1;
        idx = strtoll(rest, &end, 10);
        if (end == rest || *end)
                return;
        e->in_offset = off;
        e->index = idx;
}

static const ordo_stable_end_opts_t end_opts = { "reconcile", 0, 120000,
                                                 &ordo_stop };

/* A reader of topic/partition from offset 0 (a partition that lost its
 * first records is refused) to its stable end (the end when asked, once
 * no transaction is open below it): an event committed just before is
 * there, its commit markers included. */
static ordo_err_t open_reader(rd_kafka_t *rk, rd_kafka_t *wm, const char *topic,
                              int32_t part, ordo_kafka_reader_t *r,
                              char *errstr, size_t errstr_size) {
        int64_t lo, end;
        ordo_err_t err = ordo_kafka_stable_end(rk, wm, topic, part, &end_opts,
                                               &lo, &end, errstr, errstr_size);
        if (!err)
                err = ordo_kafka_check_start(topic, part, lo, 0, errstr,
                                             errstr_size);
        if (!err)
                ordo_kafka_reader_open(r, rk, topic, part, lo, end,
                                       "reconcile");
        return err;
}

/* Set once Kafka delivered nothing for ORDO_READ_IDLE_MS below a stable
 * end: the comparison stops as on a signal, and says why, rather than
 * wait for ever. */
static int stalled;

/* The next message below the end, or NULL at the end, on a signal or
 * once stalled. */
static rd_kafka_message_t *next_message(ordo_kafka_reader_t *r) {
        rd_kafka_message_t *m;

        if (stalled)
                return NULL;
        m = ordo_kafka_reader_await(r, ORDO_READ_IDLE_MS, &ordo_stop);
        if (r->stalled) {
                fprintf(stderr,
                        "ordo reconcile: %s [%d]: nothing read for %d s "
                        "before offset %lld\n",
                        r->topic, (int)r->partition, ORDO_READ_IDLE_MS / 1000,
                        (long long)r->end);
                stalled = 1;
        }
        return m;
}

/* Loads the reader's next stored event into r->m / r->ev; 0 at the end. */
static int reader_advance(reader_t *r, const char *source) {
        if (r->m)
                rd_kafka_message_destroy(r->m);
        r->m = next_message(&r->in);
        if (!r->m)
                return 0;
        r->decoded = r->m->payload &&
                     !ordo_codec_decode(r->codec, r->m->payload, r->m->len,
                                        &r->ev.msg, r->why, sizeof(r->why));
        if (!r->m->payload)
                snprintf(r->why, sizeof(r->why), "empty message");
        if (r->decoded)
                parse_id(&r->ev, source, r->in.partition);
        else
                r->ev.in_offset = r->ev.index = -1;
        return 1;
}

static void collect(void *opaque, const ordo_msg_t *m) {
        ev_list_t *l = opaque;
        if (!ordo_msg_is_event(m->type))
                return; /* outbound commands: not compared */
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 16;
                ev_t *v = realloc(l->v, cap * sizeof(*v));
                if (!v) {
                        l->oom = 1;
                        return;
                }
                l->v = v;
                l->cap = cap;
        }
        l->v[l->n++].msg = *m;
}

static void field_str(const ordo_msg_t *m, const ordo_field_t *f, char *buf,
                      size_t size) {
        const char *p = (const char *)m + f->offset;
        int64_t v;
        int32_t b, cnt, i;
        size_t used;
        switch (f->kind) {
        case ORDO_FIELD_STRING:
                snprintf(buf, size, "\"%s\"", p);
                break;
        case ORDO_FIELD_LONG:
                memcpy(&v, p, sizeof(v));
                snprintf(buf, size, "%lld", (long long)v);
                break;
        case ORDO_FIELD_BOOL:
                memcpy(&b, p, sizeof(b));
                snprintf(buf, size, "%s", b ? "true" : "false");
                break;
        default:
                memcpy(&cnt, (const char *)m + f->count_offset, sizeof(cnt));
                used = (size_t)snprintf(buf, size, "[");
                for (i = 0; i < cnt && i < ORDO_LEVELS_WIRE && used < size;
                     i++) {
                        memcpy(&v, p + (size_t)i * sizeof(v), sizeof(v));
                        used +=
                            (size_t)snprintf(buf + used, size - used, "%s%lld",
                                             i ? "," : "", (long long)v);
                }
                if (used < size)
                        snprintf(buf + used, size - used, "]");
        }
}

/* The writer schema of the stored event at rd, when it is a version of
 * e's type (the current one, or one written before a field was added);
 * else e's current schema. */
static uint64_t stored_schema(const ordo_codec_t *codec, const reader_t *rd,
                              const ev_t *e) {
        uint64_t fp = ordo_codec_writer_fingerprint(rd->m->payload, rd->m->len);
        size_t n;
        return ordo_codec_writer_fields(codec, fp, e->msg.type, &n)
                   ? fp
                   : ordo_schema_fingerprint(e->msg.type);
}

/* Field-level differences of two events of one position, over the fields
 * the stored one's schema has. */
static void diff_fields(report_t *r, const char *where, const ordo_msg_t *exp,
                        const ordo_msg_t *act, const char *exp_key,
                        const char *act_key, const ordo_field_t *f, size_t n) {
        size_t i;
        char a[512], b[512];
        int shown = 0;
        if (exp->type != act->type) {
                line(r,
                     "DIFF events %s id=%s field=type expected=%s "
                     "actual=%s",
                     where, exp->meta.id, ordo_msg_type_name(exp->type),
                     ordo_msg_type_name(act->type));
                return;
        }
        if (strcmp(exp_key, act_key)) {
                line(r,
                     "DIFF events %s id=%s %s field=(kafka key) "
                     "expected=\"%s\" actual=\"%s\"",
                     where, exp->meta.id, ordo_msg_type_name(exp->type),
                     exp_key, act_key);
                shown++;
        }
        for (i = 0; i < n; i++) {
                field_str(exp, &f[i], a, sizeof(a));
                field_str(act, &f[i], b, sizeof(b));
                if (strcmp(a, b)) {
                        line(r,
                             "DIFF events %s id=%s %s field=%s "
                             "expected=%s actual=%s",
                             where, exp->meta.id, ordo_msg_type_name(exp->type),
                             f[i].name, a, b);
                        shown++;
                }
        }
        if (!shown)
                line(r,
                     "DIFF events %s id=%s %s: same fields, different "
                     "bytes (encoding)",
                     where, exp->meta.id, ordo_msg_type_name(exp->type));
}

static int ev_before(const ev_t *a, const ev_t *b) {
        return a->in_offset < b->in_offset ||
               (a->in_offset == b->in_offset && a->index < b->index);
}

/* An extra: decided from no input. Undecodable, or of a type no
 * processor writes to events_short, it is a foreign writer's; one whose
 * id names an input at or before the last event matched (*last;
 * in_offset -1: none yet) is a copy written after it (a processor writes
 * in input order); the read models' totals across orders count a
 * copied commission event again. */
static void report_extra(report_t *r, reader_t *rd, const char *events,
                         const char *events_short, const ev_t *last) {
        int copy = rd->decoded && last->in_offset >= 0 &&
                   rd->ev.in_offset >= 0 && !ev_before(last, &rd->ev);
        r->diffs[SEC_EVENTS]++;
        r->foreign +=
            !rd->decoded || !ordo_msg_belongs_on(rd->ev.msg.type, events_short);
        r->copies += copy;
        if (copy)
                line(r,
                     "DIFF events %s/%d@%lld extra: %s id=%s key=%s "
                     "stored again after the event it copies (a writer "
                     "other than ordo's%s)",
                     events, (int)rd->in.partition, (long long)rd->m->offset,
                     ordo_msg_type_name(rd->ev.msg.type), rd->ev.msg.meta.id,
                     ordo_msg_key(&rd->ev.msg),
                     /* the totals across orders are guarded by offset:
                      * a copy at a new one counts; documents by version */
                     !ordo_msg_belongs_on(
                         rd->ev.msg.type,
                         ordo_topic_short(ORDO_TOPIC_COMMISSION_EVENTS))
                         ? ""
                     : rd->ev.msg.type == ORDO_MSG_COMMISSION_SETTLED
                         ? "; earnings and the leaderboard count it twice"
                         : "; earnings count it twice");
        else if (!rd->decoded)
                line(r,
                     "DIFF events %s/%d@%lld extra: undecodable (%s), "
                     "not decided by the rules",
                     events, (int)rd->in.partition, (long long)rd->m->offset,
                     rd->why);
        else
                line(r,
                     "DIFF events %s/%d@%lld extra: %s id=%s key=%s "
                     "stored, not decided by the rules",
                     events, (int)rd->in.partition, (long long)rd->m->offset,
                     ordo_msg_type_name(rd->ev.msg.type), rd->ev.msg.meta.id,
                     ordo_msg_key(&rd->ev.msg));
}

/* Binds every message of a join's topic into a state (stream.h). */
static ordo_err_t bind_all(const ordo_config_t *conf, rd_kafka_t *wm,
                           ordo_codec_t *codec, const ordo_join_t *join,
                           void *state, char *errstr, size_t errstr_size) {
        char topic[256];
        rd_kafka_t *rk;
        rd_kafka_message_t *m;
        ordo_kafka_reader_t r;
        ordo_msg_t msg;
        ordo_err_t err;
        ordo_topic_name(conf, join->topic, topic, sizeof(topic));
        rk = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                     errstr_size);
        if (!rk)
                return ORDO_ERR_CONFIG;
        err = open_reader(rk, wm, topic, 0, &r, errstr, errstr_size);
        while (!err && (m = next_message(&r))) {
                if (m->payload &&
                    !ordo_codec_decode(codec, m->payload, m->len, &msg, NULL,
                                       0) &&
                    msg.type == join->type)
                        join->bind(state, &msg);
                rd_kafka_message_destroy(m);
        }
        if (!err)
                ordo_kafka_reader_close(&r);
        rd_kafka_destroy(rk);
        return err;
}

/* One input partition (of np) against its event partition. */
static ordo_err_t reconcile_partition(const ordo_processor_def_t *def,
                                      const ordo_config_t *conf, rd_kafka_t *wm,
                                      ordo_codec_t *codec, int32_t part,
                                      int32_t np, report_t *r, char *errstr,
                                      size_t errstr_size) {
        char input[256], events[256], where[300];
        const char *in_short = ordo_topic_short(def->input);
        const char *ev_short = ordo_topic_short(def->events);
        rd_kafka_t *in = NULL, *ev = NULL;
        ordo_kafka_reader_t inr;
        int64_t lo, now_end = -1; /* the input's end once events are read */
        reader_t rd;
        ev_list_t exp = { NULL, 0, 0, 0 };
        ordo_sink_t sink = { collect, &exp };
        void *state = def->state_new();
        int64_t before = r->diffs[SEC_EVENTS], foreign_before = r->foreign,
                copies_before = r->copies;
        ev_t last; /* the last stored event matched; in_offset -1: none */
        int have;
        rd_kafka_message_t *m;
        static char buf[ENCODE_MAX];
        ordo_err_t err = ORDO_ERR_OK;
        const ordo_field_t *f;
        size_t i, len, nf;
        uint64_t fp;

        memset(&rd, 0, sizeof(rd));
        memset(&inr, 0, sizeof(inr));
        ordo_topic_name(conf, def->input, input, sizeof(input));
        ordo_topic_name(conf, def->events, events, sizeof(events));
        in = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                     errstr_size);
        ev = ordo_kafka_consumer_new(conf, NULL, NULL, NULL, errstr,
                                     errstr_size);
        if (!state || !in || !ev) {
                err = state ? ORDO_ERR_CONFIG : ORDO_ERR_NOMEM;
                goto done;
        }
        rd.codec = codec;
        if (def->join && (err = bind_all(conf, wm, codec, def->join, state,
                                         errstr, errstr_size)))
                goto done;
        /* The input's end first: stored events of later inputs are left
         * out rather than reported. */
        if ((err =
                 open_reader(in, wm, input, part, &inr, errstr, errstr_size)) ||
            (err = open_reader(ev, wm, events, part, &rd.in, errstr,
                               errstr_size)))
                goto done;
        have = reader_advance(&rd, in_short);
        last.in_offset = last.index = -1;

        while ((m = next_message(&inr))) {
                ordo_msg_t cmd;
                ordo_pos_t pos = { in_short, part, m->offset };
                int ok = m->payload &&
                         !ordo_codec_decode(codec, m->payload, m->len, &cmd,
                                            NULL, 0) &&
                         !ordo_msg_empty_id(&cmd) &&
                         !ordo_processor_refuses(def, &cmd, part, np, NULL, 0);
                int64_t in_off = m->offset;
                rd_kafka_message_destroy(m);
                r->inputs++;
                exp.n = 0;
                if (ok)
                        def->handle(state, &cmd, &pos, &sink);
                if (exp.oom) {
                        snprintf(errstr, errstr_size, "out of memory");
                        err = ORDO_ERR_NOMEM;
                        goto done;
                }
                for (i = 0; i < exp.n; i++) {
                        ev_t *e = &exp.v[i];
                        parse_id(e, in_short, part);
                        /* Stored before this one: extras. */
                        while (have && ev_before(&rd.ev, e)) {
                                report_extra(r, &rd, events, ev_short, &last);
                                have = reader_advance(&rd, in_short);
                        }
                        r->compared[SEC_EVENTS]++;
                        if (!have || ev_before(e, &rd.ev)) {
                                r->diffs[SEC_EVENTS]++;
                                line(r,
                                     "DIFF events %s/%d missing: %s id=%s "
                                     "key=%s decided from %s/%d@%lld, "
                                     "not stored",
                                     events, (int)part,
                                     ordo_msg_type_name(e->msg.type),
                                     e->msg.meta.id, ordo_msg_key(&e->msg),
                                     input, (int)part, (long long)in_off);
                                continue;
                        }
                        /* in the stored message's version of the schema:
                         * a log written before a field was added still
                         * compares byte for byte (decision 0024) */
                        fp = stored_schema(codec, &rd, e);
                        if (ordo_codec_encode_as(codec, &e->msg, fp, buf,
                                                 sizeof(buf), &len, errstr,
                                                 errstr_size)) {
                                err = ORDO_ERR_INVALID_ARG;
                                goto done;
                        }
                        if (len != rd.m->len ||
                            memcmp(buf, rd.m->payload, len) ||
                            rd.m->key_len != strlen(ordo_msg_key(&e->msg)) ||
                            (rd.m->key_len && /* a null key: NULL */
                             memcmp(rd.m->key, ordo_msg_key(&e->msg),
                                    rd.m->key_len))) {
                                char key[ORDO_ID_MAX * 2 + 2];
                                size_t kl = rd.m->key_len < sizeof(key) - 1
                                                ? rd.m->key_len
                                                : sizeof(key) - 1;
                                if (kl)
                                        memcpy(key, rd.m->key, kl);
                                key[kl] = '\0';
                                r->diffs[SEC_EVENTS]++;
                                snprintf(where, sizeof(where), "%s/%d@%lld",
                                         events, (int)part,
                                         (long long)rd.m->offset);
                                f = ordo_codec_writer_fields(codec, fp,
                                                             e->msg.type, &nf);
                                diff_fields(r, where, &e->msg, &rd.ev.msg,
                                            ordo_msg_key(&e->msg), key, f, nf);
                        }
                        last.in_offset = rd.ev.in_offset;
                        last.index = rd.ev.index;
                        have = reader_advance(&rd, in_short);
                }
        }
        /* What is left was decided from no input we read. One that names
         * an input past the end we saw may be of an input written since
         * (a live engine): left out if that input is there now, an extra
         * if it is past the input's end even now (a forged id). */
        while (have) {
                if (rd.ev.in_offset >= inr.end && now_end < 0 &&
                    (err = ordo_kafka_stable_end(in, wm, input, part, &end_opts,
                                                 &lo, &now_end, errstr,
                                                 errstr_size)))
                        goto done;
                if (rd.ev.in_offset < inr.end || rd.ev.in_offset >= now_end)
                        report_extra(r, &rd, events, ev_short, &last);
                have = reader_advance(&rd, in_short);
        }
        /* the join's own differences; a foreign writer's are not its */
        if (def->join)
                r->commission_diffs += r->diffs[SEC_EVENTS] - before -
                                       (r->foreign - foreign_before) -
                                       (r->copies - copies_before);
done:
        if (rd.m)
                rd_kafka_message_destroy(rd.m);
        ordo_kafka_reader_close(&inr);
        ordo_kafka_reader_close(&rd.in);
        if (in)
                rd_kafka_destroy(in);
        if (ev)
                rd_kafka_destroy(ev);
        if (state)
                def->state_destroy(state);
        free(exp.v);
        return err;
}

static ordo_err_t reconcile_events(const ordo_config_t *conf, report_t *r,
                                   char *errstr, size_t errstr_size) {
        ordo_codec_t *codec = ordo_codec_new(errstr, errstr_size);
        rd_kafka_t *meta = ordo_kafka_consumer_new(conf, NULL, NULL, NULL,
                                                   errstr, errstr_size);
        rd_kafka_t *wm =
            ordo_kafka_watermark_client_new(conf, errstr, errstr_size);
        ordo_err_t err = ORDO_ERR_OK;
        int d, p, np, ne;
        char input[256], events[256];

        if (!codec || !meta || !wm) {
                err = ORDO_ERR_CONFIG;
                goto done;
        }
        for (d = 0; d < (int)ordo_n_stages && !err && !ordo_stop && !stalled;
             d++) {
                const ordo_processor_def_t *def = ordo_stages[d].processor;
                if (!def)
                        continue;
                int64_t before = r->diffs[SEC_EVENTS];
                ordo_topic_name(conf, def->input, input, sizeof(input));
                ordo_topic_name(conf, def->events, events, sizeof(events));
                /* The first failure's message is the one kept. */
                np = ordo_kafka_partitions_of_existing(meta, input, errstr,
                                                       errstr_size);
                ne = np < 0 ? -1
                            : ordo_kafka_partitions_of_existing(
                                  meta, events, errstr, errstr_size);
                if (np < 0 || ne < 0) {
                        err = ORDO_ERR_KAFKA;
                        break;
                }
                if (np != ne) {
                        r->diffs[SEC_EVENTS]++;
                        line(r,
                             "DIFF events %s has %d partitions, %s %d: "
                             "not co-partitioned (decision 0004)",
                             input, np, events, ne);
                }
                for (p = 0; p < np && p < ne && !err && !ordo_stop && !stalled;
                     p++)
                        err = reconcile_partition(def, conf, wm, codec, p, np,
                                                  r, errstr, errstr_size);
                fprintf(stderr,
                        "ordo reconcile: %s: %s -> %s, %d partition(s), "
                        "%lld difference(s)\n",
                        def->name, input, events, np,
                        (long long)(r->diffs[SEC_EVENTS] - before));
        }
        if (stalled && !err) {
                snprintf(errstr, errstr_size,
                         "Kafka delivered nothing for %d s (above)",
                         ORDO_READ_IDLE_MS / 1000);
                err = ORDO_ERR_KAFKA;
        } else if (ordo_stop && !err) {
                snprintf(errstr, errstr_size, "interrupted");
                err = ORDO_ERR_INTERRUPTED;
        }
done:
        ordo_codec_destroy(codec);
        if (meta)
                rd_kafka_destroy(meta);
        if (wm)
                rd_kafka_destroy(wm);
        return err;
}

/* ------------------------------------------------------------------ */

/* The temporary targets' names begin with the live one's (up to 30
 * bytes: an operator sees whose they are) and "-reconcile-", then the
 * process and the time: <base>-reconcile-<pid>-<s>: in Redis,
 * <db>_reconcile_<pid>_<s> in MongoDB. A live Redis prefix without its
 * ':' keeps the old names, whose first byte differs from the live
 * prefix's, so that neither is a prefix of the other (rebuild refuses
 * that). */
static char temp_sep(const char *which) {
        return strcmp(which, "mongo") ? '-' : '_';
}

static const char *temp_end(const char *which) {
        return strcmp(which, "mongo") ? ":" : "";
}

static void temp_start(const char *which, const ordo_config_t *conf, char *out,
                       size_t size) {
        const char *live = ordo_config_get(conf, ordo_store_target_key(which));
        size_t n = strlen(live);
        if (!strcmp(which, "mongo"))
                snprintf(out, size, "%.30s_reconcile_", live);
        else if (n > 1 && live[n - 1] == ':')
                snprintf(out, size, "%.*s-reconcile-",
                         (int)(n - 1 > 30 ? 30 : n - 1), live);
        else
                snprintf(out, size, "%s-",
                         live[0] == 'o' ? "reconcile-ordo" : "ordo-reconcile");
}

/* Temporary targets this deployment's reconciles left (killed: nothing
 * ran to drop them) are dropped at the next one: those named ten
 * minutes ago or more, and without a heartbeat (a running reconcile
 * keeps one in its target, through the rebuild and the comparison;
 * ordo_rebuild_drop refuses a target with one on). */
#define LEFT_AFTER_S 600

typedef struct {
        const char *which, *start;
        const ordo_config_t *conf;
} sweep_t;

/* The time in a name of exactly start<pid><sep><s><end> (as
 * reconcile_store makes them), or -1. */
static long long named_at(const char *which, const char *name,
                          const char *start) {
        const char *p = name + strlen(start);
        size_t n = strspn(p, "0123456789");
        if (!n || p[n] != temp_sep(which))
                return -1;
        p += n + 1;
        if (!(n = strspn(p, "0123456789")) || n > 12 ||
            strcmp(p + n, temp_end(which)))
                return -1;
        return strtoll(p, NULL, 10);
}

static void drop_leftover(void *arg, const char *name) {
        const sweep_t *w = arg;
        long long at = named_at(w->which, name, w->start);
        char why[512];
        if (at < 0 || (long long)time(NULL) - at < LEFT_AFTER_S)
                return;
        if (ordo_rebuild_drop(w->which, w->conf, name, why, sizeof(why)))
                fprintf(stderr,
                        "ordo reconcile: %s, left by an earlier reconcile, "
                        "stays: %s\n",
                        name, why);
        else
                fprintf(stderr,
                        "ordo reconcile: dropped %s, left by an earlier "
                        "reconcile that did not finish\n",
                        name);
}

static void sweep_leftovers(const char *which, const ordo_config_t *conf,
                            const char *start) {
        sweep_t w = { which, start, conf };
        char errstr[256];
        if (ordo_store_targets_named(which, conf, start, drop_leftover, &w,
                                     errstr, sizeof(errstr)))
                fprintf(stderr,
                        "ordo reconcile: looking for what earlier "
                        "reconciles left: %s\n",
                        errstr);
}

/* The temporary target's heartbeat, one name from the rebuild's start
 * to the comparison's end (the rebuild renews it, then the comparison,
 * within its 15 s): not dropped by another reconcile's sweep. */
typedef struct {
        ordo_store_t store;
        int open;
        char id[64];
        int64_t renewed_ms;
} keep_t;

static void keep_renew(void *arg) {
        keep_t *k = arg;
        char errstr[256];
        if (!k->open || !ordo_store_alive_due(k->renewed_ms))
                return;
        k->renewed_ms = ordo_monotonic_ms();
        if (ordo_store_alive(&k->store, k->id, ORDO_ALIVE_TTL_MS, errstr,
                             sizeof(errstr)))
                fprintf(stderr,
                        "ordo reconcile: the temporary target's heartbeat: "
                        "%s\n",
                        errstr);
}

static ordo_err_t reconcile_store(const char *which, const ordo_config_t *conf,
                                  report_t *r, char *errstr,
                                  size_t errstr_size) {
        char tmp[128], start[64];
        ordo_rebuild_stats_t st;
        keep_t keep = { .renewed_ms = 0 };
        ordo_diff_t d = { .vline = vline,
                          .opaque = r,
                          .stop = &ordo_stop,
                          .tick = keep_renew,
                          .tick_arg = &keep };
        int sec = !strcmp(which, "mongo") ? SEC_MONGO : SEC_REDIS;
        ordo_err_t err, derr;
        char why[512];
        temp_start(which, conf, start, sizeof(start));
        sweep_leftovers(which, conf, start);
        snprintf(tmp, sizeof(tmp), "%s%d%c%lld%s", start, (int)getpid(),
                 temp_sep(which), (long long)time(NULL), temp_end(which));
        snprintf(keep.id, sizeof(keep.id), "reconcile.%d", (int)getpid());
        fprintf(stderr, "ordo reconcile: rebuilding %s into temporary %s\n",
                which, tmp);
        err = ordo_rebuild_run(which, conf, tmp, NULL, 10, keep.id, &ordo_stop,
                               &st, errstr, errstr_size);
        if (!err && st.parked) {
                /* The store refused these for good (logged with their
                 * offsets by the rebuild); the live projection parked them
                 * too, so the comparison below cannot show them. */
                line(r,
                     "%s: %lld event(s) refused by the store; the read "
                     "model lacks them (each named by an ERROR line "
                     "on standard error; docs/operating.md)",
                     which, (long long)st.parked);
                r->diffs[sec] += st.parked;
        }
        /* the heartbeat the rebuild left on: renewed through the
         * comparison, removed before the drop (which refuses it) */
        keep.open =
            !ordo_store_open(&keep.store, which, conf, tmp, why, sizeof(why));
        if (!keep.open)
                fprintf(stderr,
                        "ordo reconcile: no heartbeat in %s through the "
                        "comparison (%s)\n",
                        tmp, why);
        if (!err) {
                fprintf(stderr,
                        "ordo reconcile: %s rebuilt from %lld events in "
                        "%.1f s; comparing\n",
                        which, (long long)st.applied,
                        (double)st.elapsed_ms / 1000.0);
                keep_renew(&keep);
                err =
                    ordo_store_diff(which, conf, tmp, &d, errstr, errstr_size);
                r->diffs[sec] += d.diffs;
                r->notes[sec] += d.notes;
                r->compared[sec] += d.compared;
                r->errors += d.errors;
        }
        if (keep.open) {
                ordo_store_alive(&keep.store, keep.id, 0, why, sizeof(why));
                ordo_store_close(&keep.store);
        }
        if ((derr = ordo_rebuild_drop(which, conf, tmp, why, sizeof(why))))
                fprintf(stderr, "ordo reconcile: dropping %s: %s\n", tmp, why);
        return err;
}

static void reconcile_help(void) {
        printf("\nRe-runs the four processors' rules in memory over their "
               "input topics\n(activity-, order-, referral-commands; "
               "order-events for commissions, with the\nwhole referral "
               "graph of referral-events bound first) and compares what "
               "they\ndecide with the stored event topics, event by event "
               "(encoded bytes and key;\nfield by field on a mismatch). "
               "Then rebuilds both read models from the event\ntopics into "
               "a temporary MongoDB database and Redis prefix (named after "
               "the\nlive ones, dropped after; those a killed reconcile "
               "left, ten minutes old\nand more, are dropped by the next) "
               "and compares them, document by document\nand key by "
               "key, with the live ones (mongo.db, redis.prefix).\nGuard "
               "fields (offsets, *:version, *:offsets) and TTLs are not "
               "compared. Run\nit when the engine is caught up (`ordo "
               "wait`): events and writes still in\nflight show as "
               "differences.\n\n"
               "Output: one line per difference on stdout,\n"
               "  DIFF events TOPIC/PARTITION@OFFSET id=EVENT_ID TYPE "
               "field=F expected=X actual=Y\n"
               "  DIFF events TOPIC/PARTITION missing: ... | "
               "TOPIC/PARTITION@OFFSET extra: ...\n"
               "  DIFF mongo COLLECTION _id=\"ID\" field=F expected=X "
               "actual=Y | missing | extra\n"
               "  DIFF redis KEY [field=F] expected=X actual=Y | missing | "
               "extra\n"
               "then a summary (a section that could not be compared says "
               "\"not compared\").\nA difference in commission-events "
               "can be a binding sent after a payment it\npredates "
               "(decision 0025).\n\n"
               "  --skip-read-models   compare the event topics only\n"
               "  --limit N            print at most N lines (all are "
               "counted)\n\n"
               "Exit status: 0 no difference, 1 differences, 2 usage, "
               "could not compare,\nor the report could not be written.\n");
}

int ordo_cmd_reconcile(ordo_config_t *conf, int argc, char **argv) {
        report_t r;
        char errstr[512];
        int i, skip_models = 0, s, done[SEC__N] = { 0 }, tried[SEC__N] = { 0 };
        int64_t total = 0;
        ordo_err_t err;
        time_t t0 = time(NULL);

        memset(&r, 0, sizeof(r));
        r.limit = -1;
        if (ordo_wants_help(argc, argv)) {
                reconcile_help();
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--skip-read-models"))
                        skip_models = 1;
                else if (!strcmp(argv[i], "--limit")) {
                        if (ordo_option_count(argc, argv, &i, "reconcile",
                                              "a number of lines", &r.limit))
                                return 2;
                } else {
                        fprintf(stderr,
                                "ordo reconcile: unexpected argument \"%s\"\n",
                                argv[i]);
                        return 2;
                }
        }
        err = reconcile_events(conf, &r, errstr, sizeof(errstr));
        done[SEC_EVENTS] = !err;
        for (s = SEC_MONGO; s < SEC__N && !err && !skip_models; s++) {
                tried[s] = 1;
                done[s] = !(err = reconcile_store(sec_names[s], conf, &r,
                                                  errstr, sizeof(errstr)));
        }
        fflush(stdout);
        if (r.copies)
                printf("note: %lld event(s) stored again after the event "
                       "they copy (DIFF ... stored again): written by "
                       "another than ordo's processors; the projections "
                       "count a copied commission in earnings again "
                       "(docs/read-models.md).\n",
                       (long long)r.copies);
        if (r.commission_diffs)
                printf("note: %lld difference(s) in commission-events. The "
                       "commission processor joins\norder events with the "
                       "referral graph as it has read it so far: a binding\n"
                       "sent after a payment it predates (by its bound_ms, "
                       "a late or backdated\nsender) is missed live and "
                       "seen here (decision 0025). Processors run\nwith "
                       "join.wait.ms=0 miss the bindings still on their "
                       "way too.\n",
                       (long long)r.commission_diffs);
        /* A section that could not be compared says so here too: a
         * script reading stdout must not take it for "0 differences". */
        if (done[SEC_EVENTS])
                printf("reconcile: events: %lld inputs re-decided, %lld "
                       "events compared, %lld difference(s)\n",
                       (long long)r.inputs, (long long)r.compared[SEC_EVENTS],
                       (long long)r.diffs[SEC_EVENTS]);
        else
                printf("reconcile: events: not compared (see stderr)\n");
        for (s = SEC_MONGO; s < SEC__N && !skip_models; s++)
                if (done[s])
                        printf("reconcile: %s: %lld %s compared, %lld "
                               "difference(s)%s\n",
                               sec_names[s], (long long)r.compared[s],
                               s == SEC_MONGO ? "documents" : "keys/members",
                               (long long)r.diffs[s],
                               r.notes[s] ? " (and notes, not counted)" : "");
                else
                        printf("reconcile: %s: not compared (%s)\n",
                               sec_names[s],
                               tried[s] ? "see stderr"
                                        : "not tried after the failure above");
        for (s = 0; s < SEC__N; s++)
                total += r.diffs[s];
        if (err || r.errors)
                printf("reconcile: incomplete after %lld s: %lld "
                       "difference(s) in what was compared\n",
                       (long long)(time(NULL) - t0), (long long)total);
        else
                printf("reconcile: %lld difference(s) in %lld s%s\n",
                       (long long)total, (long long)(time(NULL) - t0),
                       skip_models ? " (read models skipped)" : "");
        if (err || r.errors) {
                fprintf(stderr, "ordo reconcile: %s\n",
                        ordo_stop ? "stopped by a signal before every "
                                    "comparison was made"
                        : err     ? errstr
                                  : "some comparisons failed (above)");
                return 2;
        }
        /* A report that did not reach its file is no comparison: 2, not
         * 1 ("differences"); main says why (an outside review). */
        if (fflush(stdout) || ferror(stdout))
                return 2;
        return total ? 1 : 0;
}
