/*
 * ordo tick: the Tick that drives the order processor's timers, through
 * the door (admit.h) to every partition of order-commands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "clock.h"
#include "commands.h"
#include "kafka.h"
#include "send.h"

static void tick_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                           void *opaque) {
        (void)rk;
        if (ordo_kafka_delivery_err(m)) /* an error, or no offset */
                *(int *)opaque = 1;
}

int ordo_cmd_tick(ordo_config_t *conf, int argc, char **argv) {
        /* by default as the stages' own (decision 0028): a command
         * stamped before it and still on its way is not overtaken */
        int64_t ts = ordo_wall_ms() - ordo_config_get_int(conf, "tick.lag.ms");
        char errstr[512], topic[256];
        ordo_validate_opts_t opts = { .keep_ts = 1 }; /* --ts or now */
        ordo_door_t door;
        rd_kafka_t *rk;
        ordo_codec_t *codec;
        ordo_msg_t m;
        int i, parts, failed = 0, future = 0;

        if (ordo_wants_help(argc, argv)) {
                printf("\n--ts TIME the Tick's ts_ms: ms since the epoch or "
                       "ISO-8601 with a zone\n          (default: now less "
                       "tick.lag.ms, as the stage's own Ticks)\n"
                       "--future  send a --ts later than this machine's "
                       "clock (refused without it:\n          every timer due "
                       "by then would fire at once, for good)\n\n"
                       "Timers due by ts fire at their own deadlines, in "
                       "deadline order (RULES.md:\na pay timeout once ts "
                       "is past the deadline, auto-receipt and settlement "
                       "from\nthe deadline on). The order processor also "
                       "ticks by itself every\ntick.interval.ms, tick.lag.ms "
                       "behind the wall clock; batch runs with old\n"
                       "timestamps set tick.interval.ms=0 and send their "
                       "own Ticks.\n\n"
                       "Exit status: 0 sent to every partition, 1 not "
                       "delivered (Kafka or the topic\nunavailable), 2 "
                       "usage (a --ts after the clock without --future).\n");
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--ts")) {
                        const char *v =
                            ordo_option_value(argc, argv, &i, "tick");
                        if (!v || ordo_option_time("tick", "--ts", v, &ts))
                                return 2;
                } else if (!strcmp(argv[i], "--future")) {
                        future = 1;
                } else {
                        fprintf(stderr, "ordo tick: unknown argument %s\n",
                                argv[i]);
                        return 2;
                }
        }
        /* An outside review: one digit too many in --ts cancelled every
         * unpaid order and settled every paid one of a live sale. */
        if (!future && ts > ordo_wall_ms()) {
                fprintf(stderr,
                        "ordo tick: --ts %lld is %lld s after this machine's "
                        "clock: every timer due by then would fire at once, "
                        "for good (unpaid orders cancelled, paid ones "
                        "received and settled); give --future to send it\n",
                        (long long)ts,
                        (long long)((ts - ordo_wall_ms()) / 1000));
                return 2;
        }
        rk = ordo_kafka_producer_new(conf, NULL, tick_delivered, &failed,
                                     errstr, sizeof(errstr));
        codec = ordo_codec_new(errstr, sizeof(errstr));
        if (!rk || !codec) {
                fprintf(stderr, "ordo tick: %s\n", errstr);
                if (rk)
                        rd_kafka_destroy(rk);
                ordo_codec_destroy(codec);
                return 1;
        }
        ordo_door_init(&door, ordo_admit_random_instance());
        ordo_msg_init(&m, ORDO_MSG_TICK);
        m.meta.ts_ms = ts;
        ordo_admit_stamp(&door, &opts, ordo_wall_ms(), &m);
        ordo_door_fini(&door);
        ordo_topic_name(conf, ORDO_TOPIC_ORDER_COMMANDS, topic, sizeof(topic));
        parts =
            ordo_send_tick(rk, codec, topic, &m, NULL, errstr, sizeof(errstr));
        if (parts < 0) {
                fprintf(stderr, "ordo tick: %s\n", errstr);
                failed = 1;
        }
        if (rd_kafka_flush(rk, 30000))
                failed = 1;
        rd_kafka_destroy(rk);
        ordo_codec_destroy(codec);
        if (failed) {
                if (parts >= 0)
                        fprintf(stderr,
                                "ordo tick: could not deliver every Tick\n");
                return 1;
        }
        printf("tick ts_ms=%lld partitions=%d\n", (long long)ts, parts);
        return 0;
}
