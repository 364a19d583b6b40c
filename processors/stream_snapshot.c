/*
 * ordo - snapshots (docs/decisions/0005): written inside the processing
 * transaction in chunks to the partition of the same number of the
 * processor's compacted snapshot topic; read back newest manifest first.
 */
#include "stream_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Below the broker's and librdkafka's default message.max.bytes (1 MB). */
#define SNAPSHOT_CHUNK    (512 * 1024)
#define SNAPSHOT_MANIFEST "manifest"

static int header_int(const rd_kafka_message_t *rkm, const char *name,
                      int64_t *out) {
        rd_kafka_headers_t *h;
        const void *val;
        size_t size;
        char buf[32], *end;
        if (rd_kafka_message_headers(rkm, &h) ||
            rd_kafka_header_get_last(h, name, &val, &size) || !val ||
            size == 0 || size >= sizeof(buf))
                return -1;
        memcpy(buf, val, size);
        buf[size] = '\0';
        *out = strtoll(buf, &end, 10);
        return *end ? -1 : 0;
}

static void add_int_header(rd_kafka_headers_t *h, const char *name, int64_t v) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        rd_kafka_header_add(h, name, -1, buf, -1);
}

static rd_kafka_headers_t *snapshot_headers(const ordo__part_t *part,
                                            int64_t events_next, int64_t chunk,
                                            int64_t chunks, int64_t bytes) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(5);
        add_int_header(h, "ordo.snapshot.chunk", chunk);
        add_int_header(h, "ordo.snapshot.chunks", chunks);
        add_int_header(h, "ordo.snapshot.events", events_next);
        add_int_header(h, "ordo.snapshot.input", part->input_next);
        add_int_header(h, "ordo.snapshot.bytes", bytes);
        return h;
}

/* Writes partition q's state inside the open transaction: its chunks,
 * then a manifest. The transaction makes them all-or-nothing, and one
 * writer per partition makes them consecutive offsets, so a restore
 * finds the manifest near the end and reads the chunks just before.
 *
 * The state is the fold of every event before the event partition's
 * stable end: we are its only writer, and our previous transaction is
 * committed. Asking Kafka (rather than tracking delivery reports, some
 * of which carry no offset) makes that offset exact; a stale one would
 * make a restore fold events twice. Returns 0 if nothing was written. */
static int write_snapshot(ordo__proc_t *p, int32_t q) {
        ordo__part_t *part = &p->parts[q];
        int64_t i, chunks, lo, events_next;
        char key[32];

        if (ordo__stable_end(p, p->events, q, &lo, &events_next)) {
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"snapshot skipped\" partition=%d error=\"%s\"",
                         (int)q, p->errstr);
                return 0;
        }
        p->snap.len = 0;
        p->def->save(p->states[q], &p->snap);
        chunks = (int64_t)((p->snap.len + SNAPSHOT_CHUNK - 1) / SNAPSHOT_CHUNK);
        for (i = 0; i < chunks && !p->produce_err; i++) {
                size_t off = (size_t)i * SNAPSHOT_CHUNK;
                size_t len = p->snap.len - off < SNAPSHOT_CHUNK
                                 ? p->snap.len - off
                                 : SNAPSHOT_CHUNK;
                /* Compaction keeps the newest message of each key. */
                snprintf(key, sizeof(key), "chunk-%lld", (long long)i);
                ordo__produce(p, p->snaps, q, key, strlen(key),
                              p->snap.data + off, len,
                              snapshot_headers(part, events_next, i, chunks,
                                               (int64_t)p->snap.len));
        }
        /* Not empty: an empty value is a tombstone, which compaction
         * would eventually delete. */
        ordo__produce(p, p->snaps, q, SNAPSHOT_MANIFEST,
                      strlen(SNAPSHOT_MANIFEST), p->def->name,
                      strlen(p->def->name),
                      snapshot_headers(part, events_next, chunks, chunks,
                                       (int64_t)p->snap.len));
        /* Events of this transaction come after the snapshot; if it
         * aborts, the rewind's restore recounts from the last one. */
        part->since_snapshot = 0;
        part->snapshot_in_txn = 1;
        p->stats->snapshots++;
        p->stats->snapshot_bytes += (int64_t)p->snap.len;
        ORDO_LOG(INFO, p->def->name,
                 "msg=snapshot partition=%d bytes=%zu chunks=%lld "
                 "events_next=%lld",
                 (int)q, p->snap.len, (long long)chunks,
                 (long long)events_next);
        ordo_buf_fini(&p->snap); /* a state's size, needed rarely */
        return 1;
}

/* At the start of a transaction: one due partition's snapshot, at most,
 * so a transaction never carries several states. */
static int due(const ordo__proc_t *p, int q) {
        const ordo__part_t *part = &p->parts[q];
        return p->states[q] &&
               part->since_snapshot >= p->snapshot_every + part->snapshot_delay;
}

int ordo__snapshot_due(const ordo__proc_t *p) {
        int q;
        for (q = 0; p->snapshot_every && q < p->n_states; q++)
                if (due(p, q))
                        return 1;
        return 0;
}

void ordo__write_due_snapshots(ordo__proc_t *p) {
        int q;
        for (q = 0; p->snapshot_every && q < p->n_states; q++)
                if (due(p, q) && write_snapshot(p, q))
                        return;
}

/* After the transaction: a committed snapshot resets its partition's
 * delay; an aborted one postpones the next attempt. */
void ordo__snapshots_done(ordo__proc_t *p, int committed) {
        int q;
        for (q = 0; q < p->n_states; q++) {
                ordo__part_t *part = &p->parts[q];
                if (!part->snapshot_in_txn)
                        continue;
                part->snapshot_in_txn = 0;
                if (committed) {
                        part->snapshot_delay = 0;
                        continue;
                }
                part->snapshot_delay =
                    part->snapshot_delay * 2 + p->snapshot_every;
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"snapshot aborted with its transaction; "
                         "next attempt postponed\" partition=%d "
                         "after_events=%lld",
                         (int)q,
                         (long long)(p->snapshot_every + part->snapshot_delay));
        }
}

static void find_manifest(ordo__proc_t *p, const rd_kafka_message_t *rkm,
                          void *arg) {
        ordo__snap_meta_t *m = arg, found;
        (void)p;
        if (rkm->key_len != strlen(SNAPSHOT_MANIFEST) ||
            memcmp(rkm->key, SNAPSHOT_MANIFEST, rkm->key_len) ||
            header_int(rkm, "ordo.snapshot.chunks", &found.chunks) ||
            header_int(rkm, "ordo.snapshot.events", &found.events_next) ||
            header_int(rkm, "ordo.snapshot.input", &found.input_next) ||
            header_int(rkm, "ordo.snapshot.bytes", &found.bytes) ||
            found.chunks < 0 || found.chunks > rkm->offset || found.bytes < 0 ||
            found.bytes > found.chunks * SNAPSHOT_CHUNK)
                return;
        found.offset = rkm->offset;
        found.next_chunk = 0;
        found.bad = 0;
        *m = found;
}

static void gather_chunk(ordo__proc_t *p, const rd_kafka_message_t *rkm,
                         void *arg) {
        ordo__snap_meta_t *m = arg;
        int64_t chunk, events;
        if (m->bad)
                return;
        if (header_int(rkm, "ordo.snapshot.chunk", &chunk) ||
            header_int(rkm, "ordo.snapshot.events", &events) ||
            chunk != m->next_chunk || events != m->events_next ||
            p->snap.len + rkm->len > (size_t)m->bytes) {
                m->bad = 1;
                return;
        }
        if (p->snap.cap < (size_t)m->bytes) {
                uint8_t *d = realloc(p->snap.data, (size_t)m->bytes);
                if (!d) {
                        m->bad = 1;
                        return;
                }
                p->snap.data = d;
                p->snap.cap = (size_t)m->bytes;
        }
        if (rkm->len)
                memcpy(p->snap.data + p->snap.len, rkm->payload, rkm->len);
        p->snap.len += rkm->len;
        m->next_chunk++;
}

/* The latest snapshot of a partition, or *state NULL when there is none
 * usable (then restore starts from the beginning; only a Kafka error
 * fails). Looks back from the end of the snapshot partition in growing
 * windows for the newest manifest, then reads its chunks. */
ordo_err_t ordo__load_snapshot(ordo__proc_t *p, int32_t q, int64_t events_end,
                               int64_t input_committed, void **state,
                               ordo__snap_meta_t *meta) {
        int64_t lo, end, from, window = 8;
        char why[256];
        ordo_err_t err;

        *state = NULL;
        meta->offset = -1;
        if (!p->snapshot_every)
                return ORDO_ERR_OK;
        if ((err = ordo__stable_end(p, p->snaps, q, &lo, &end)))
                return err;
        for (from = end; meta->offset < 0 && from > lo; window *= 4) {
                int64_t to = from;
                from = end - window > lo ? end - window : lo;
                ordo__read_range(p, p->snaps, q, from, to, find_manifest, meta);
        }
        if (meta->offset < 0)
                return ORDO_ERR_OK;
        if (meta->events_next > events_end ||
            (p->def->join && meta->input_next > input_committed)) {
                ORDO_LOG(WARN, p->def->name,
                         "msg=\"snapshot ignored: ahead of the log\" "
                         "partition=%d snapshot_events=%lld events_end=%lld "
                         "snapshot_input=%lld committed=%lld",
                         (int)q, (long long)meta->events_next,
                         (long long)events_end, (long long)meta->input_next,
                         (long long)input_committed);
                return ORDO_ERR_OK;
        }
        p->snap.len = 0;
        ordo__read_range(p, p->snaps, q, meta->offset - meta->chunks,
                         meta->offset, gather_chunk, meta);
        if (meta->bad || meta->next_chunk != meta->chunks ||
            p->snap.len != (size_t)meta->bytes)
                snprintf(why, sizeof(why),
                         "chunks %lld of %lld, %zu of %lld bytes",
                         (long long)meta->next_chunk, (long long)meta->chunks,
                         p->snap.len, (long long)meta->bytes);
        else
                *state =
                    p->def->load(p->snap.data, p->snap.len, why, sizeof(why));
        ordo_buf_fini(&p->snap); /* a state's size: do not hold it */
        if (*state)
                return ORDO_ERR_OK;
        ORDO_LOG(WARN, p->def->name,
                 "msg=\"snapshot unusable, restoring from the start\" "
                 "partition=%d offset=%lld reason=\"%s\"",
                 (int)q, (long long)meta->offset, why);
        meta->offset = -1;
        return ORDO_ERR_OK;
}
