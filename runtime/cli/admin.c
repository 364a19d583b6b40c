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

static void print_pair(void *opaque, const char *key, const char *value) {
        char buf[1024];
        (void)opaque;
        printf("%s=%s\n", key,
               ordo_config_redact(key, value, buf, sizeof(buf)));
}

int ordo_cmd_config(ordo_config_t *conf, int argc, char **argv) {
        if (ordo_wants_help(argc, argv)) {
                printf("\nPrints every configuration key with its effective "
                       "value, as key=value lines\nthat `-c FILE` accepts. "
                       "Secrets are redacted: passwords, SASL and SSL key\n"
                       "settings, tokens, and the password of a connection "
                       "string (mongo.uri).\n");
                return 0;
        }
        if (argc > 1) {
                fprintf(stderr, "ordo config: unexpected argument %s\n",
                        argv[1]);
                return 2;
        }
        ordo_config_foreach(conf, print_pair, NULL);
        return 0;
}
