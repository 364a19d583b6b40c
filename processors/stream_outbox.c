/*
 * ordo - the outbox: what a batch decided, encoded, before its
 * transaction may begin (docs/decisions/0018). librdkafka allows one
 * open transaction per producer, so a batch decided while the previous
 * one commits is held here, then produced as soon as the commit
 * returns, or discarded with its batch if that commit aborted.
 */
#include "stream_int.h"

#include <stdlib.h>
#include <string.h>

static int reserve(void **p, size_t *cap, size_t need, size_t size) {
        size_t c = *cap ? *cap : 64;
        void *q;
        if (need <= *cap)
                return 0;
        while (c < need)
                c *= 2;
        if (!(q = realloc(*p, c * size)))
                return -1;
        *p = q;
        *cap = c;
        return 0;
}

void ordo__outbox_add(ordo__outbox_t *o, const char *topic, int32_t partition,
                      const void *key, size_t key_len, const void *value,
                      size_t len, rd_kafka_headers_t *hdrs) {
        ordo__out_msg_t *m;
        if (reserve((void **)&o->data, &o->cap, o->len + key_len + len, 1) ||
            reserve((void **)&o->msgs, &o->cap_msgs, o->n + 1,
                    sizeof(*o->msgs))) {
                rd_kafka_headers_destroy(hdrs);
                o->oom = 1;
                return;
        }
        m = &o->msgs[o->n++];
        m->topic = topic;
        m->partition = partition;
        m->key = o->len;
        m->key_len = key_len;
        m->key_null = !key;
        m->value_null = !value;
        if (key_len)
                memcpy(o->data + o->len, key, key_len);
        o->len += key_len;
        m->value = o->len;
        m->len = len;
        if (len)
                memcpy(o->data + o->len, value, len);
        o->len += len;
        m->hdrs = hdrs;
}

/* Never NULL, also for an empty key or value at the very start of an
 * outbox that holds no bytes yet: NULL would make it a null. */
static const void *bytes_at(const ordo__outbox_t *o, size_t off) {
        return o->data ? (const void *)(o->data + off) : (const void *)"";
}

void ordo__outbox_flush(ordo__proc_t *p) {
        ordo__outbox_t *o = &p->outbox;
        size_t i;
        if (o->oom && !p->produce_err)
                p->produce_err = RD_KAFKA_RESP_ERR__QUEUE_FULL;
        for (i = 0; i < o->n; i++) {
                ordo__out_msg_t *m = &o->msgs[i];
                if (p->produce_err) { /* the transaction aborts */
                        rd_kafka_headers_destroy(m->hdrs);
                        continue;
                }
                ordo__produce(p, m->topic, m->partition,
                              m->key_null ? NULL : bytes_at(o, m->key),
                              m->key_len,
                              m->value_null ? NULL : bytes_at(o, m->value),
                              m->len, m->hdrs);
        }
        o->n = o->len = 0;
        o->oom = 0;
}

void ordo__outbox_discard(ordo__outbox_t *o) {
        size_t i;
        for (i = 0; i < o->n; i++)
                rd_kafka_headers_destroy(o->msgs[i].hdrs);
        o->n = o->len = 0;
        o->oom = 0;
}

void ordo__outbox_fini(ordo__outbox_t *o) {
        ordo__outbox_discard(o);
        free(o->data);
        free(o->msgs);
        memset(o, 0, sizeof(*o));
}
