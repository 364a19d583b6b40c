/*
 * ordo ingest: run the HTTP gateway (ingest.h) until SIGINT or SIGTERM;
 * SIGHUP reloads ingest.keys.file.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "ingest.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"

static volatile sig_atomic_t reload;

static void on_hup(int sig) {
        (void)sig;
        reload = 1;
}

int ordo_cmd_ingest(ordo_config_t *conf, int argc, char **argv) {
        ordo_ingest_t *gw;
        ordo_metrics_server_t *metrics = NULL;
        ordo_metrics_source_t src;
        const char *addr;
        char errstr[512];
        int i;

        for (i = 1; i < argc; i++) {
                if ((!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))) {
                        printf("\nPOST /v1/commands (one JSON command) and "
                               "POST /v1/commands:batch (JSON\nlines); 202 "
                               "once Kafka has the commands. GET /healthz "
                               "and GET\n/metrics on the same address, "
                               "and on metrics.listen when it is set.\nKeys: "
                               "ingest.* (`ordo config`). Contract: "
                               "docs/command-contract.md,\n\"HTTP "
                               "gateway\". SIGHUP reloads ingest.keys.file "
                               "(a bad file keeps\nthe old keys and logs "
                               "why).\n\n  --listen HOST:PORT   the same "
                               "as -X ingest.listen=HOST:PORT\n");
                        return 0;
                }
                if (!strcmp(argv[i], "--listen")) {
                        const char *v =
                            ordo_option_value(argc, argv, &i, "ingest");
                        if (!v)
                                return 2;
                        if (ordo_config_set(conf, "ingest.listen", v, errstr,
                                            sizeof(errstr))) {
                                fprintf(stderr,
                                        "ordo ingest: --listen: expected "
                                        "IPv4 HOST:PORT, got \"%.64s\"\n",
                                        v);
                                return 2;
                        }
                } else {
                        fprintf(stderr,
                                "ordo ingest: unknown argument %s (see "
                                "`ordo ingest --help`)\n",
                                argv[i]);
                        return 2;
                }
        }
        ordo_kafka_log_library("ingest");
        /* before the gateway starts: a SIGHUP's default would end it */
        signal(SIGHUP, on_hup);
        if (!(gw = ordo_ingest_new(conf, errstr, sizeof(errstr)))) {
                fprintf(stderr, "ordo ingest: %s\n", errstr);
                return 1;
        }
        /* The gateway serves /metrics and /healthz on ingest.listen; with
         * metrics.listen set (not "auto"), there too, as every
         * long-running command (DESIGN.md). */
        addr = ordo_metrics_address(conf, NULL);
        src = ordo_ingest_metrics_source(gw);
        if (addr && !(metrics = ordo_metrics_serve(addr, &src, errstr,
                                                   sizeof(errstr)))) {
                fprintf(stderr, "ordo ingest: %s\n", errstr);
                ordo_ingest_destroy(gw);
                return 1;
        }
        while (!ordo_stop) {
                usleep(100000);
                if (reload) {
                        reload = 0;
                        if (ordo_ingest_reload_keys(gw, errstr, sizeof(errstr)))
                                ORDO_LOG(ERROR, "ingest",
                                         "msg=\"keys not reloaded, the old "
                                         "keys stay\" error=\"%s\"",
                                         errstr);
                }
        }
        ORDO_LOG(INFO, "ingest", "msg=stopping");
        ordo_metrics_server_stop(metrics);
        ordo_ingest_destroy(gw);
        return 0;
}
