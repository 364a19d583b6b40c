/*
 * ordo topics | config: small administrative commands.
 */
#include <stdio.h>

#include "commands.h"
#include "kafka.h"

int ordo_cmd_topics(ordo_config_t *conf, int argc, char **argv) {
        char errstr[512], name[256];
        int i;
        if (ordo_wants_help(argc, argv)) {
                printf("\nCreates every topic of DESIGN.md under "
                       "topic.prefix that does not exist yet\n"
                       "(topic.partitions partitions; one for the referral "
                       "topics; the *-snapshots\ntopics compacted, see "
                       "docs/decisions/0005) and lists them.\n");
                return 0;
        }
        if (argc > 1) {
                fprintf(stderr, "ordo topics: unexpected argument %s\n",
                        argv[1]);
                return 2;
        }
        if (ordo_kafka_ensure_topics(conf, &ordo_stop, errstr,
                                     sizeof(errstr))) {
                fprintf(stderr, "ordo topics: %s\n", errstr);
                return 1;
        }
        for (i = 0; i < ORDO_TOPIC__COUNT; i++) {
                ordo_topic_name(conf, (ordo_topic_t)i, name, sizeof(name));
                printf("%s\n", name);
        }
        return 0;
}

/* A derived key left empty prints empty, its value in a comment above:
 * the output given back as -c FILE must keep following its source
 * (group.prefix pinned to one topic.prefix would join and fence another
 * deployment's groups once topic.prefix changes). */
static void print_pair(void *opaque, const char *key, const char *value) {
        const ordo_config_t *conf = opaque;
        const char *from = ordo_config_derived_from(conf, key);
        char buf[1024];
        int hidden = *value && ordo_config_key_is_secret(key);
        if (from) {
                printf("# %s is empty, so it is %s's: \"%s\"\n%s=\n", key, from,
                       value, key);
                return;
        }
        /* A secret's line is a comment: given back as -c FILE, a literal
         * "[redacted]" became the password (an outside review). A
         * connection string keeps its line, its password "***": a login
         * that fails, not another server. */
        printf("%s%s=%s%s\n", hidden ? "# " : "", key,
               ordo_config_redact(key, value, buf, sizeof(buf)),
               hidden ? "   (a secret: not printed)" : "");
}

int ordo_cmd_config(ordo_config_t *conf, int argc, char **argv) {
        if (ordo_wants_help(argc, argv)) {
                printf("\nPrints every configuration key with its effective "
                       "value, as key=value lines\nthat `-c FILE` accepts. "
                       "group.prefix left empty prints empty (it follows\n"
                       "topic.prefix), its value in a comment above. "
                       "Secrets are redacted: passwords,\nSASL and SSL key "
                       "settings, tokens, and the password of a connection\n"
                       "string (mongo.uri). A secret's line is a comment, so "
                       "that the output\ngiven back as -c FILE leaves it at "
                       "its default (set it from a file of its\nown or an "
                       "ORDO_ variable); a connection string keeps its line, "
                       "its password\n***, which fails to log in.\n");
                return 0;
        }
        if (argc > 1) {
                fprintf(stderr, "ordo config: unexpected argument %s\n",
                        argv[1]);
                return 2;
        }
        ordo_config_foreach(conf, print_pair, conf);
        return 0;
}
