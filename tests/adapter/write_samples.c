/*
 * ordo - write sample messages of every type for check_python_decode.py:
 * DIR/<Type>-<variant>.bin in single-object encoding, and DIR/expected.json
 * with the field values each should decode to. An independent Avro reader
 * then proves the wire format is standard (DESIGN.md, "Avro": any Avro
 * library can decode a topic with the .avsc files alone).
 *
 * usage: write_samples DIR
 */
#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>

#include "codec.h"
#include "codec_samples.h"

#define RANDOM_SAMPLES 4

static json_t *fields_json(const ordo_msg_t *m) {
        const ordo_field_t *f;
        json_t *o = json_object();
        size_t n, i;
        int32_t k;
        f = ordo_msg_fields(m->type, &n);
        for (i = 0; i < n; i++) {
                const char *p = (const char *)m + f[i].offset;
                json_t *v = NULL;
                int32_t cnt;
                switch (f[i].kind) {
                case ORDO_FIELD_STRING:
                        v = json_string(p);
                        break;
                case ORDO_FIELD_LONG:
                        v = json_integer(*(const int64_t *)p);
                        break;
                case ORDO_FIELD_BOOL:
                        v = json_boolean(*(const int32_t *)p);
                        break;
                case ORDO_FIELD_LONGS:
                        v = json_array();
                        cnt = *(const int32_t *)((const char *)m +
                                                 f[i].count_offset);
                        for (k = 0; k < cnt; k++)
                                json_array_append_new(
                                    v, json_integer(((const int64_t *)p)[k]));
                        break;
                }
                json_object_set_new(o, f[i].name, v);
        }
        return o;
}

int main(int argc, char **argv) {
        char errstr[256], path[4096];
        static uint8_t buf[4096];
        ordo_codec_t *c;
        json_t *all;
        unsigned v;
        int t;

        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR\n", argv[0]);
                return 2;
        }
        if (!(c = ordo_codec_new(errstr, sizeof(errstr)))) {
                fprintf(stderr, "%s\n", errstr);
                return 1;
        }
        all = json_array();
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                for (v = 0; v < ORDO_SAMPLE_EDGES + RANDOM_SAMPLES; v++) {
                        const char *name = ordo_msg_type_name(t);
                        ordo_msg_t m;
                        size_t len;
                        FILE *fp;
                        json_t *e;
                        ordo_sample_fill(&m, t, v);
                        if (ordo_codec_encode(c, &m, buf, sizeof(buf), &len,
                                              errstr, sizeof(errstr))) {
                                fprintf(stderr, "%s\n", errstr);
                                return 1;
                        }
                        snprintf(path, sizeof(path), "%s/%s-%u.bin", argv[1],
                                 name, v);
                        if (!(fp = fopen(path, "wb")) ||
                            fwrite(buf, 1, len, fp) != len || fclose(fp)) {
                                perror(path);
                                return 1;
                        }
                        e = json_object();
                        json_object_set_new(e, "type", json_string(name));
                        snprintf(path, sizeof(path), "%s-%u.bin", name, v);
                        json_object_set_new(e, "file", json_string(path));
                        json_object_set_new(e, "fields", fields_json(&m));
                        json_array_append_new(all, e);
                }
        }
        snprintf(path, sizeof(path), "%s/expected.json", argv[1]);
        if (json_dump_file(all, path, JSON_INDENT(1))) {
                fprintf(stderr, "%s: cannot write\n", path);
                return 1;
        }
        json_decref(all);
        ordo_codec_destroy(c);
        return 0;
}
