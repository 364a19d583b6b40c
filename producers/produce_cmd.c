/*
 * ordo produce: JSON lines -> validated commands -> Avro on Kafka.
 *
 * Invalid lines are reported with their number and reason and never sent;
 * valid lines are sent even when others fail; the exit status says whether
 * every line was taken (DESIGN.md "Command line").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admit.h"
#include "codec.h"
#include "commands.h"
#include "json_flat.h"
#include "kafka.h"
#include "lines.h"
#include "send.h"
#include "clock.h"

#define MAX_REASONS 32

/* Lines up to twice the command limit are read whole, so the validator
 * words every near miss (trailing CRs are not counted); longer ones are
 * skipped unread (lines.h), and memory stays bounded whatever the input. */
#define LINE_MAX_HELD (2 * ORDO_COMMAND_MAX_BYTES)

typedef struct {
        int64_t read, valid, refused, delivered, failed;
        int64_t unconfirmed;   /* acked without an offset: not written */
        int64_t maybe_written; /* not delivered, but sent: maybe written */
        /* BindReferrers queued and not yet reported on, and their topic */
        int64_t bindings_in_flight;
        const char *binding_topic;
        /* --keep-ts: the latest ts_ms of a ConfirmPayment so far, the
         * BindReferrers no later than it, and the first one's line */
        int64_t paid_ts_max;
        int64_t late_bindings, first_late_line;
        /* --keep-ts: commands stamped well before the clock (their
         * timers are due by now), and the first one's line */
        int64_t old_ts, first_old_line;
        /* one bit per input line: a message of that line failed, so the
         * line is counted once, even a Tick sent to every partition */
        unsigned char *failed_lines;
        size_t failed_cap;
        struct {
                char reason[32];
                int64_t n;
        } reasons[MAX_REASONS];
        int n_reasons;
} produce_stats_t;

static void count_reason(produce_stats_t *s, const char *reason) {
        int i;
        for (i = 0; i < s->n_reasons; i++)
                if (!strcmp(s->reasons[i].reason, reason)) {
                        s->reasons[i].n++;
                        return;
                }
        if (s->n_reasons < MAX_REASONS) {
                ordo_strlcpy(s->reasons[s->n_reasons].reason, reason,
                             sizeof(s->reasons[0].reason));
                s->reasons[s->n_reasons++].n = 1;
        }
}

/* Marks line lineno failed; counts it the first time. */
static void line_failed(produce_stats_t *s, int64_t lineno) {
        size_t byte = (size_t)lineno / 8;
        unsigned char bit = (unsigned char)(1u << (lineno % 8));
        if (byte >= s->failed_cap) {
                size_t cap = s->failed_cap ? s->failed_cap : 4096;
                while (cap <= byte)
                        cap *= 2;
                s->failed_lines = realloc(s->failed_lines, cap);
                if (!s->failed_lines)
                        abort();
                memset(s->failed_lines + s->failed_cap, 0, cap - s->failed_cap);
                s->failed_cap = cap;
        }
        if (!(s->failed_lines[byte] & bit)) {
                s->failed_lines[byte] |= bit;
                s->failed++;
        }
}

/* Delivery reports arrive on this thread, from rd_kafka_poll/flush. A
 * message counts as sent only with the offset the broker wrote it at
 * (ordo_kafka_delivery_err). */
static void delivered(rd_kafka_t *rk, const rd_kafka_message_t *m,
                      void *opaque) {
        produce_stats_t *s = opaque;
        rd_kafka_resp_err_t err = ordo_kafka_delivery_err(m);
        int maybe;
        (void)rk;
        if (!strcmp(rd_kafka_topic_name(m->rkt), s->binding_topic))
                s->bindings_in_flight--;
        if (!err) {
                s->delivered++;
                return;
        }
        if (!m->err)
                s->unconfirmed++;
        line_failed(s, (int64_t)(intptr_t)m->_private);
        maybe = ordo_kafka_maybe_written(m);
        s->maybe_written += maybe;
        fprintf(stderr, "line %lld: not delivered: %s%s\n",
                (long long)(intptr_t)m->_private,
                m->err ? rd_kafka_err2str(m->err)
                       : "acknowledged without an offset (implicit ack of "
                         "a refused message)",
                maybe ? " (sent but not confirmed: it may be in the log)" : "");
}

/* A binding counts for a payment when its command is written first
 * (decision 0025), and lines to two topics race to the broker: a
 * ConfirmPayment (the one command whose decision reads the bindings)
 * after BindReferrers waits until Kafka has reported on them (written or
 * failed). A flush sends what lingers at once: one round trip. -1 when
 * a stop came first. */
static int bindings_written(rd_kafka_t *rk, const produce_stats_t *s) {
        while (s->bindings_in_flight > 0 && !ordo_stop)
                rd_kafka_flush(rk, 100);
        return s->bindings_in_flight > 0 ? -1 : 0;
}

static void usage_details(void) {
        printf(
            "\nReads one JSON command per line from FILE (or stdin) and "
            "sends each valid one\nto its command topic. A line that is "
            "not a valid command is reported on\nstderr as `line N: "
            "<error> (<REASON>)` and not sent, REASON being the\ncode of "
            "docs/command-contract.md (WRONG_TYPE, MISSING, ...). Blank "
            "lines are\nskipped.\n\n"
            "  --keep-ts   keep ts_ms from the input; it is then "
            "required (batch, replay)\n"
            "              Without it every command is stamped with "
            "the current time\n              and a ts_ms in the input "
            "is ignored.\n"
            "  --dry-run   validate only; send nothing (what needs Kafka, such "
            "as a\n"
            "              Tick's partition existing, is not checked)\n\n"
            "Commands: CreateActivity, PlaceOrder, CancelOrder, "
            "ConfirmPayment,\nConfirmReceipt, RefundOrder, "
            "BindReferrer, Tick (sent to every partition; with\n\"partition\", "
            "as `ordo replay` prints it, to that one only).\nSee "
            "docs/command-contract.md. Missing topics are created, each "
            "named on stderr.\nA ConfirmPayment after BindReferrers waits "
            "until Kafka has them, so that a\nfile's bindings count for "
            "its later payments (decision 0025).\nA BindReferrer after "
            "a ConfirmPayment is stamped after it (it does not\ncount for "
            "it); with --keep-ts one with a ts_ms not after such a payment's "
            "is\nsent as it is, and the summary warns of it. So it does of "
            "commands over 60 s\nold with --keep-ts unless tick.interval.ms "
            "is 0: the stages' own Ticks would\nfire their timers at once.\n"
            "A line counts as sent once Kafka has "
            "written it at an offset. With Kafka\nunreachable every line "
            "is still checked, and the valid ones are not delivered.\n"
            "SIGINT or SIGTERM stops the reading (not a send waiting for "
            "room in a full\nqueue): what was read is sent and summed "
            "up.\n"
            "Exit status: 0 if every line was "
            "sent, 1 if any line was refused or not\ndelivered (send "
            "those again), the input failed to read or was stopped, 2\n"
            "on usage errors (a FILE that cannot be opened, a "
            "directory).\n");
}

/* With --keep-ts, a BindReferrer with a ts_ms no later than a
 * ConfirmPayment before it counts by timing, as one the door would
 * stamp in the payment's millisecond (admit.h): counted for the
 * summary's warning. */
static void note_late_binding(produce_stats_t *s, const ordo_msg_t *m,
                              int64_t lineno) {
        if (m->type == ORDO_MSG_CONFIRM_PAYMENT) {
                if (m->meta.ts_ms > s->paid_ts_max)
                        s->paid_ts_max = m->meta.ts_ms;
        } else if (m->type == ORDO_MSG_BIND_REFERRER &&
                   m->meta.ts_ms <= s->paid_ts_max && !s->late_bindings++)
                s->first_late_line = lineno;
}

/* With --keep-ts, a command stamped more than this before the wall
 * clock is a back-dated batch's: with tick.interval.ms > 0 the order
 * stage's own wall-clock Ticks fire its timers at once (an outside
 * audit: a payment 900 ms before its deadline was refused
 * ORDER_CANCELLED). Counted for the summary's warning. */
#define BACK_DATED_MS 60000

static void note_back_dated(produce_stats_t *s, const ordo_msg_t *m,
                            int64_t now_ms, int64_t lineno) {
        if (m->type != ORDO_MSG_TICK &&
            m->meta.ts_ms < now_ms - BACK_DATED_MS && !s->old_ts++)
                s->first_old_line = lineno;
}

/* The input: FILE, or stdin for none or "-", read as bounded lines. */
typedef struct {
        ordo_lines_t lines;
        int own_fd; /* opened here (stdin is not ours to close) */
} input_t;

/* 0, or the exit status of a usage error (1 if out of memory), said on
 * stderr. */
static int open_input(const char *path, input_t *in) {
        const char *name = path && strcmp(path, "-") ? path : NULL;
        int fd = name ? open(name, O_RDONLY) : 0;
        struct stat st;

        if (fd < 0) {
                fprintf(stderr, "ordo produce: %s: %s\n", name,
                        strerror(errno));
                return 2;
        }
        in->own_fd = name != NULL;
        if (!fstat(fd, &st) && S_ISDIR(st.st_mode)) {
                fprintf(stderr, "ordo produce: %s: %s\n", name ? name : "stdin",
                        strerror(EISDIR));
                if (in->own_fd)
                        close(fd);
                return 2;
        }
        if (ordo_lines_init(&in->lines, fd, LINE_MAX_HELD)) {
                fprintf(stderr, "ordo produce: out of memory\n");
                if (in->own_fd)
                        close(fd);
                return 1;
        }
        return 0;
}

static void close_input(input_t *in) {
        if (in->own_fd)
                close(in->lines.fd);
        ordo_lines_fini(&in->lines);
}

int ordo_cmd_produce(ordo_config_t *conf, int argc, char **argv) {
        const char *path = NULL, *line;
        int dry_run = 0, no_kafka = 0, stopped, i, rc = 0, read_errno = 0;
        char errstr[512], topics[ORDO_TOPIC__COUNT][256];
        size_t len;
        ordo_line_result_t got = ORDO_LINE_END;
        input_t in;
        int64_t lineno = 0, t0 = ordo_wall_ms(),
                tick_lag_ms = ordo_config_get_int(conf, "tick.lag.ms");
        /* the stages' setting, when they share this configuration */
        int64_t ticking = ordo_config_get_int(conf, "tick.interval.ms");
        rd_kafka_t *rk = NULL;
        ordo_codec_t *codec;
        produce_stats_t stats;
        ordo_door_t door;
        ordo_validate_opts_t opts = { .keep_ts = 0,
                                      .ignore_ts = 1,
                                      .tick_partition = 1 };

        if (ordo_wants_help(argc, argv)) {
                usage_details();
                return 0;
        }
        for (i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--keep-ts"))
                        opts.keep_ts = 1;
                else if (!strcmp(argv[i], "--dry-run"))
                        dry_run = 1;
                else if (argv[i][0] == '-' && argv[i][1]) {
                        fprintf(stderr, "ordo produce: unknown option %s\n",
                                argv[i]);
                        return 2;
                } else if (!path)
                        path = argv[i];
                else {
                        fprintf(stderr, "ordo produce: one FILE at most\n");
                        return 2;
                }
        }
        if ((rc = open_input(path, &in)))
                return rc;
        /* SIGINT or SIGTERM ends the input, even while a read waits on
         * a pipe, FIFO or terminal; what was read is sent and summed up */
        in.lines.stop = &ordo_stop;
        memset(&stats, 0, sizeof(stats));
        stats.paid_ts_max = INT64_MIN;
        codec = ordo_codec_new(errstr, sizeof(errstr));
        if (!codec) {
                fprintf(stderr, "ordo produce: %s\n", errstr);
                close_input(&in);
                return 1;
        }
        ordo_door_init(&door, ordo_admit_random_instance());
        for (i = 0; i < ORDO_TOPIC__COUNT; i++)
                ordo_topic_name(conf, (ordo_topic_t)i, topics[i],
                                sizeof(topics[i]));
        stats.binding_topic = topics[ORDO_TOPIC_REFERRAL_COMMANDS];
        if (!dry_run &&
            (ordo_kafka_ensure_topics(conf, &ordo_stop, errstr,
                                      sizeof(errstr)) ||
             !(rk = ordo_kafka_producer_new(conf, NULL, delivered, &stats,
                                            errstr, sizeof(errstr))))) {
                /* Still check every line, so that bad input is reported
                 * whatever else fails; the valid ones are not delivered. */
                fprintf(stderr,
                        "ordo produce: %s; checking the input, nothing will "
                        "be sent\n",
                        errstr);
                no_kafka = 1;
        }
        while (!ordo_stop && (got = ordo_lines_next(&in.lines, &line, &len)) <
                                 ORDO_LINE_END) {
                ordo_msg_t m;
                ordo_field_fault_t fault;
                ordo_err_t err;
                ordo_topic_t topic;
                size_t k = len;
                void *op;
                int sent;
                int64_t now;

                lineno++;
                if (got == ORDO_LINE_TOO_LONG) {
                        fprintf(stderr,
                                "line %lld: command is %zu bytes, at most "
                                "%d (TOO_LARGE)\n",
                                (long long)lineno, len, ORDO_COMMAND_MAX_BYTES);
                        stats.read++;
                        stats.refused++;
                        count_reason(&stats, "TOO_LARGE");
                        continue;
                }
                if (k && line[k - 1] == '\r') /* "\r\n": its ending */
                        k--;
                if (ordo_json_blank(line, len))
                        continue;
                stats.read++;
                now = ordo_wall_ms();
                err = ordo_admit(&door, line, k, &opts, now, &m, &fault, errstr,
                                 sizeof(errstr));
                if (err) {
                        /* the reason code too, for programs: the wording
                         * may change, the code does not */
                        const char *code =
                            fault.reason[0] ? fault.reason : "INVALID";
                        fprintf(stderr, "line %lld: %s (%s)\n",
                                (long long)lineno, errstr, code);
                        stats.refused++;
                        count_reason(&stats, code);
                        continue;
                }
                /* A Tick stamped here trails the wall clock as `ordo
                 * tick`'s and the stage's own do: stamped now, it could
                 * overtake a command still on its way (decision 0028). */
                if (m.type == ORDO_MSG_TICK && !opts.keep_ts)
                        m.meta.ts_ms -= tick_lag_ms;
                if (opts.keep_ts) {
                        note_late_binding(&stats, &m, lineno);
                        if (ticking)
                                note_back_dated(&stats, &m, now, lineno);
                }
                stats.valid++;
                if (dry_run)
                        continue;
                if (no_kafka) {
                        stats.failed++;
                        continue;
                }
                topic = ordo_command_topic(m.type);
                if (m.type == ORDO_MSG_CONFIRM_PAYMENT &&
                    bindings_written(rk, &stats)) {
                        fprintf(stderr,
                                "line %lld: not sent: stopped while the "
                                "bindings before it were on their way\n",
                                (long long)lineno);
                        line_failed(&stats, lineno);
                        continue;
                }
                /* the line number rides along to the delivery report */
                op = (void *)(intptr_t)lineno;
                if (m.type == ORDO_MSG_TICK)
                        sent = ordo_send_tick(rk, codec, topics[topic], &m, op,
                                              errstr, sizeof(errstr));
                else
                        sent = ordo_send(rk, codec, topics[topic],
                                         RD_KAFKA_PARTITION_UA, &m, op, errstr,
                                         sizeof(errstr))
                                   ? -1
                                   : 1;
                if (sent == 1 && topic == ORDO_TOPIC_REFERRAL_COMMANDS)
                        stats.bindings_in_flight++;
                if (sent < 0)
                        fprintf(stderr, "line %lld: %s%s\n", (long long)lineno,
                                errstr,
                                sent == -2 ? " (NO_SUCH_PARTITION)" : "");
                if (sent == -2) { /* a Tick for a partition there is not */
                        stats.valid--;
                        stats.refused++;
                        count_reason(&stats, "NO_SUCH_PARTITION");
                } else if (sent < 0)
                        line_failed(&stats, lineno);
                if (sent != -2 && stats.valid % 100000 == 0)
                        fprintf(stderr,
                                "ordo produce: %lld lines read, %lld queued, "
                                "%lld refused\n",
                                (long long)lineno, (long long)stats.valid,
                                (long long)stats.refused);
        }
        /* the lines after a read error were never read, so not "every
         * line sent" */
        if (got == ORDO_LINE_ERROR && !(errno == EINTR && ordo_stop))
                read_errno = errno;
        /* a signal after the last line (during the flush) cut nothing */
        stopped = ordo_stop && got != ORDO_LINE_END;
        close_input(&in);
        if (rk) {
                if (rd_kafka_flush(rk, 60000)) {
                        /* Purged messages get a delivery report with an
                         * error, so their lines count as not delivered. */
                        fprintf(stderr,
                                "ordo produce: %d message(s) not "
                                "delivered within 60s\n",
                                rd_kafka_outq_len(rk));
                        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE |
                                               RD_KAFKA_PURGE_F_INFLIGHT);
                        rd_kafka_flush(rk, 5000);
                }
                rd_kafka_destroy(rk);
        }
        free(stats.failed_lines);
        ordo_codec_destroy(codec);
        ordo_door_fini(&door);

        if (stats.old_ts)
                fprintf(stderr,
                        "ordo produce: warning: %lld command(s) with a ts_ms "
                        "over %d s before this machine's clock (the first on "
                        "line %lld), and tick.interval.ms is %lld: order "
                        "stages that tick by themselves fire every timer due "
                        "by now at once; run a back-dated batch's stages with "
                        "-X tick.interval.ms=0 and send its Ticks "
                        "(docs/operating.md \"Time\")\n",
                        (long long)stats.old_ts, BACK_DATED_MS / 1000,
                        (long long)stats.first_old_line, (long long)ticking);
        if (stats.late_bindings)
                fprintf(stderr,
                        "ordo produce: warning: %lld BindReferrer(s) with a "
                        "ts_ms no later than a ConfirmPayment before them "
                        "(the first on line %lld): whether one counts for "
                        "such a payment depends on timing (docs/rules.md, "
                        "\"Commission\"); put bindings before the payments "
                        "they cover\n",
                        (long long)stats.late_bindings,
                        (long long)stats.first_late_line);
        fprintf(stderr,
                "ordo produce: %lld command(s) %s, %lld refused, %lld not "
                "delivered, in %lld ms",
                (long long)(stats.valid - stats.failed),
                dry_run ? "valid" : "sent", (long long)stats.refused,
                (long long)stats.failed, (long long)(ordo_wall_ms() - t0));
        if (stats.unconfirmed)
                fprintf(stderr, " (%lld acknowledged without an offset)",
                        (long long)stats.unconfirmed);
        if (stats.maybe_written)
                fprintf(stderr,
                        " (%lld sent but not confirmed: they may be in the "
                        "log)",
                        (long long)stats.maybe_written);
        for (i = 0; i < stats.n_reasons; i++)
                fprintf(stderr, "%s %s=%lld",
                        i ? "," : " (refused:", stats.reasons[i].reason,
                        (long long)stats.reasons[i].n);
        fprintf(stderr, "%s\n", stats.n_reasons ? ")" : "");
        if (read_errno)
                fprintf(stderr,
                        "ordo produce: reading %s after line %lld: %s; the "
                        "rest of the input was not read\n",
                        path && strcmp(path, "-") ? path : "stdin",
                        (long long)lineno, strerror(read_errno));
        if (stopped)
                fprintf(stderr,
                        "ordo produce: stopped by a signal after line %lld; "
                        "the rest of the input was not read\n",
                        (long long)lineno);
        if (stats.refused || stats.failed || read_errno || stopped)
                rc = 1;
        return rc;
}
