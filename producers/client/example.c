/*
 * ordo-client-example: places one order through the ingest gateway with
 * the C client (ordo_client.h) and prints the outcome.
 *
 *   ordo-client-example [--host H] [--port P] [--key ID --secret S]
 *                       ACTIVITY USER QTY
 *
 * It sends its own order_id, so a resend after 429 or 503 (at most 3,
 * after Retry-After) can never become a second order. The command_id is
 * the gateway's, new at each resend: the rules recognise a PlaceOrder
 * again by its order_id, not by its command_id (RULES.md).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ordo_client.h"

#define MAX_RETRIES 3

static int usage(void) {
        fprintf(stderr, "usage: ordo-client-example [--host H] [--port P] "
                        "[--key ID --secret S] ACTIVITY USER QTY\n");
        return 2;
}

int main(int argc, char **argv) {
        const char *host = "127.0.0.1", *key = NULL, *secret = NULL;
        int port = 8080, i, attempt;
        char err[512], order_id[65], *end;
        ordo_client_result_t res;
        ordo_client_t *c;
        long long qty;
        struct timespec now;

        for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
                if (strcmp(argv[i], "--host") == 0)
                        host = argv[i + 1];
                else if (strcmp(argv[i], "--port") == 0)
                        port = atoi(argv[i + 1]);
                else if (strcmp(argv[i], "--key") == 0)
                        key = argv[i + 1];
                else if (strcmp(argv[i], "--secret") == 0)
                        secret = argv[i + 1];
                else
                        return usage();
        }
        if (argc - i != 3)
                return usage();
        qty = strtoll(argv[i + 2], &end, 10);
        if (!*argv[i + 2] || *end)
                return usage();
        /* An id of our own, unique enough for an example. */
        clock_gettime(CLOCK_REALTIME, &now);
        snprintf(order_id, sizeof(order_id), "ex-%lld-%ld-%d",
                 (long long)now.tv_sec, now.tv_nsec, (int)getpid());

        c = ordo_client_new(host, port, key, secret, 10000, err, sizeof(err));
        if (!c) {
                fprintf(stderr, "ordo-client-example: %s\n", err);
                return 1;
        }
        for (attempt = 0;; attempt++) {
                if (ordo_client_place_order(c, order_id, argv[i], argv[i + 1],
                                            qty, &res, err, sizeof(err)) != 0) {
                        fprintf(stderr, "ordo-client-example: %s\n", err);
                        ordo_client_destroy(c);
                        return 1;
                }
                if ((res.status != 429 && res.status != 503) ||
                    attempt == MAX_RETRIES)
                        break;
                fprintf(stderr, "status=%d reason=%s retry_after_s=%d\n",
                        res.status, res.reason, res.retry_after_s);
                sleep(
                    (unsigned)(res.retry_after_s > 0 ? res.retry_after_s : 1));
        }
        ordo_client_destroy(c);
        if (res.status == 202) {
                printf("accepted order_id=%s command_id=%s\n", res.order_id,
                       res.command_id);
                return 0;
        }
        printf("status=%d reason=%s field=%s error=%s\n", res.status,
               res.reason, res.field, res.error);
        return 1;
}
