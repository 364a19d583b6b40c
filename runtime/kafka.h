/*
 * ordo - Kafka client setup shared by every stage: the topics of
 * DESIGN.md, producers, consumers, topic creation and partition counts.
 */
#ifndef ORDO_KAFKA_H
#define ORDO_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <signal.h>

#include "config.h"
#include "err.h"
#include "messages.h"

/* DESIGN.md "Topics and keys": short names; the prefix comes from
 * topic.prefix. single: one partition. compact: a compacted topic of
 * processor snapshots (docs/decisions/0005), co-partitioned with the
 * processor's event topic. */
#define ORDO_TOPICS(X)                                                         \
        X(ACTIVITY_COMMANDS, "activity-commands", 0, 0)                        \
        X(ACTIVITY_EVENTS, "activity-events", 0, 0)                            \
        X(ORDER_COMMANDS, "order-commands", 0, 0)                              \
        X(ORDER_EVENTS, "order-events", 0, 0)                                  \
        X(REFERRAL_COMMANDS, "referral-commands", 1, 0)                        \
        X(REFERRAL_EVENTS, "referral-events", 1, 0)                            \
        X(COMMISSION_EVENTS, "commission-events", 0, 0)                        \
        X(DEAD_LETTERS, "dead-letters", 0, 0)                                  \
        X(ACTIVITY_SNAPSHOTS, "activity-snapshots", 0, 1)                      \
        X(ORDER_SNAPSHOTS, "order-snapshots", 0, 1)                            \
        X(REFERRAL_SNAPSHOTS, "referral-snapshots", 1, 1)                      \
        X(COMMISSION_SNAPSHOTS, "commission-snapshots", 0, 1)

typedef enum {
#define X(e, n, single, compact) ORDO_TOPIC_##e,
        ORDO_TOPICS(X)
#undef X
            ORDO_TOPIC__COUNT
} ordo_topic_t;

const char *ordo_topic_short(ordo_topic_t t);
/* ORDO_TOPIC__COUNT when the short name is unknown. */
ordo_topic_t ordo_topic_from_short(const char *short_name);
/* 1 for the snapshot topics: not Avro, not for analysts. */
int ordo_topic_is_snapshots(ordo_topic_t t);
/* The command topic a command type is routed to (RULES.md "routed by"),
 * or ORDO_TOPIC__COUNT for events. */
ordo_topic_t ordo_command_topic(ordo_msg_type_t type);

/* prefix + short name */
void ordo_topic_name(const ordo_config_t *conf, ordo_topic_t t, char *buf,
                     size_t size);

/* A librdkafka configuration from every kafka.* key, with ordo's log
 * callback. The caller owns it (or hands it to rd_kafka_new). */
rd_kafka_conf_t *ordo_kafka_conf(const ordo_config_t *conf, char *errstr,
                                 size_t errstr_size);

/* An idempotent producer (acks=all, murmur2 partitioner as Java's, so a
 * key lands on the same partition from any client). transactional_id may
 * be NULL. */
typedef void(ordo_delivery_cb_t)(rd_kafka_t *rk, const rd_kafka_message_t *m,
                                 void *opaque);
rd_kafka_t *ordo_kafka_producer_new(const ordo_config_t *conf,
                                    const char *transactional_id,
                                    ordo_delivery_cb_t *delivery_cb,
                                    void *opaque, char *errstr,
                                    size_t errstr_size);

/* The librdkafka the process runs with. Its version alone does not tell
 * Debian's 2.0.2 from the one infra/stack rebuilds with decision 0031's
 * fix; its file does. scripts/build links the rebuilt one by run path,
 * so a copy of the binary elsewhere finds the system's. */
typedef struct {
        const char *file;       /* "unknown" when the loader cannot say */
        const char *linked_dir; /* where the build found it ("": unknown) */
        int as_linked; /* file in linked_dir: 1, 0 (elsewhere), -1 unknown */
} ordo_kafka_library_t;
ordo_kafka_library_t ordo_kafka_library(void); /* found once */
/* Logs it (INFO, stage), and a WARN when it is not the one linked: a
 * binary copied out of its build tree finds the system's, which before
 * 2.4.0 spins on its timers (decision 0031). For the long-running
 * commands, before they reach Kafka. */
void ordo_kafka_log_library(const char *stage);

/* The error of a delivery report. A success without an offset counts as
 * a failure (RD_KAFKA_RESP_ERR__INCONSISTENT): librdkafka's idempotent
 * producer "implicitly acks" earlier messages of a partition when a later
 * batch succeeds, even when the broker refused them (NOT_LEADER on a new
 * partition, issue 14), and only a message the broker wrote in a batch of
 * its own gets an offset (docs/decisions/0012). */
rd_kafka_resp_err_t ordo_kafka_delivery_err(const rd_kafka_message_t *m);
/* 1 when a message reported failed may still be in the log: it was sent
 * and not confirmed (a timeout, a connection lost on the way; librdkafka's
 * RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED). A caller resends it with the
 * same ids. */
int ordo_kafka_maybe_written(const rd_kafka_message_t *m);

/* A read_committed consumer with manual commits and the eager range
 * assignor (STACK.md: librdkafka 2.0.2's cooperative path has bugs).
 * group may be NULL for a consumer used only with assign();
 * rebalance_cb may be NULL. */
typedef void(ordo_rebalance_cb_t)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                                  rd_kafka_topic_partition_list_t *parts,
                                  void *opaque);
rd_kafka_t *ordo_kafka_consumer_new(const ordo_config_t *conf,
                                    const char *group,
                                    ordo_rebalance_cb_t *rebalance_cb,
                                    void *opaque, char *errstr,
                                    size_t errstr_size);

/* A group member with static membership (KIP-345): group.instance.id is
 * "<group>.<instance.id>", so a restarted instance takes its partitions
 * back at once instead of after the session timeout
 * (docs/decisions/0009). An offset no longer in the log (its records
 * deleted) is not skipped: the poll answers with an error that
 * ordo_kafka_records_lost recognises. Leave with ordo_kafka_member_leave
 * before rd_kafka_consumer_close when stopping for good, or the
 * partitions wait for the session timeout. */
rd_kafka_t *ordo_kafka_member_new(const ordo_config_t *conf, const char *group,
                                  ordo_rebalance_cb_t *rebalance_cb,
                                  void *opaque, char *errstr,
                                  size_t errstr_size);
/* Unsubscribes (a static member's LeaveGroup) and polls until the
 * revocation is served or timeout_ms passed. */
void ordo_kafka_member_leave(rd_kafka_t *rk, int timeout_ms);

/* What a fence by FENCED_INSTANCE_ID means for a static member
 * (decision 0018): a process restarted in its place, a broker that lost
 * track of it, or a second live process with its instance.id. */
typedef enum {
        ORDO_FENCE_REJOIN = 0, /* lost partitions: rejoin */
        /* a third within two minutes: two live ones would fence each
         * other for ever, each rejoin fencing the other, seconds apart;
         * this one ends. (Two could be a broker's: one that stalled or
         * restarted fences a lone member by its own newer join, and two
         * outages 109 s apart stopped a lone `ordo run`, an outside
         * audit; Kafka cannot tell us who holds the id: a replaced
         * static member keeps its first holder's client.id.) */
        ORDO_FENCE_TWIN,
        /* this process was paused (SIGSTOP, a frozen VM) for 5 s or more
         * in the last minute: the one started in its place meanwhile is
         * the live one, and this one ends rather than fence it back */
        ORDO_FENCE_REPLACED
} ordo_fence_t;
/* The verdict on a fence now; fenced_ms remembers the last two
 * (monotonic ms, 0: none). */
ordo_fence_t ordo_kafka_fenced(int64_t fenced_ms[2]);
/* The error that ends a member ordo_kafka_fenced did not let rejoin. */
void ordo_kafka_twin_error(const ordo_config_t *conf, const char *group,
                           ordo_fence_t why, char *errstr, size_t errstr_size);

/* A consumer used only to ask for high watermarks as read_uncommitted sees
 * them: compared with a read_committed client's answer (the last stable
 * offset) it tells whether a transaction is still open on a partition. */
rd_kafka_t *ordo_kafka_watermark_client_new(const ordo_config_t *conf,
                                            char *errstr, size_t errstr_size);

/* Create any missing topic of DESIGN.md (topic.partitions partitions for
 * keyed topics, one for single ones). Existing topics are left alone.
 * Returns once the leader of every partition answers a ListOffsets
 * request, so a producer's first batch is not refused (issue 14); or
 * ORDO_ERR_INTERRUPTED once *stop (may be NULL) is set, rather than wait
 * out Kafka's 30 s. */
ordo_err_t ordo_kafka_ensure_topics(const ordo_config_t *conf,
                                    volatile sig_atomic_t *stop, char *errstr,
                                    size_t errstr_size);

/* For the tools that ask Kafka and end (replay, lag, wait, tick,
 * reconcile, rebuild): the flag their stop sets (the command line's
 * ordo_stop; NULL: none). Once it is set, the queries below ask nothing
 * more and their retries end (ORDO_ERR_INTERRUPTED from watermarks), so
 * that a SIGINT or SIGTERM while Kafka does not answer stops the tool in
 * seconds, not after the 30 s (an outside review). Not for the stages
 * or produce: their stop finishes what it began. */
void ordo_kafka_queries_stop_on(volatile sig_atomic_t *flag);

/* Low and high watermarks, retrying for up to 30 s while the partition
 * has no leader yet (a topic just created) or the broker is busy. */
ordo_err_t ordo_kafka_watermarks(rd_kafka_t *rk, const char *topic,
                                 int32_t partition, int64_t *lo, int64_t *hi,
                                 char *errstr, size_t errstr_size);

/* Partition count of a topic, or -1 with errstr; retried like
 * ordo_kafka_watermarks while the topic is not known yet. */
int ordo_kafka_partitions(rd_kafka_t *rk, const char *topic, char *errstr,
                          size_t errstr_size);
/* How a missing topic is named (one %s: the topic). */
#define ORDO_NO_TOPIC_FMT                                                      \
        "no topic %s in Kafka (is the topic prefix right? `ordo topics` "      \
        "creates ordo's topics)"
/* 1 if Kafka has topic, 0 if it answers that it has none, -1 without an
 * answer (within seconds). */
int ordo_kafka_topic_exists(rd_kafka_t *rk, const char *topic);
/* The same for a topic that must exist already (replay, reconcile read
 * what was written): -2 at once, with errstr, when Kafka answers that it
 * has no such topic, instead of waiting for it to appear. */
int ordo_kafka_partitions_of_existing(rd_kafka_t *rk, const char *topic,
                                      char *errstr, size_t errstr_size);

/* Consumer group id and transactional id of a stage: prefix + the stage's
 * group (runtime/cli/stages.h), the one way they are built.
 * ordo_kafka_group uses group.prefix; rebuild names its own prefix. */
void ordo_group_name(const char *prefix, const char *stage_group, char *buf,
                     size_t size);
void ordo_kafka_group(const ordo_config_t *conf, const char *stage_group,
                      char *buf, size_t size);

#endif
