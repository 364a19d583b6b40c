/*
 * The "routed to" column of the message table (schemas/messages.h) and
 * what is derived from it: the command topic of each command and the
 * input each processor accepts (DESIGN.md "Topics and keys").
 */
#include <criterion/criterion.h>
#include <string.h>

#include "kafka.h"
#include "processors.h"

Test(routes, every_command_goes_to_one_command_topic) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                ordo_topic_t to = ordo_command_topic((ordo_msg_type_t)t);
                const char *name = ordo_msg_type_name((ordo_msg_type_t)t);
                if (ordo_msg_is_event((ordo_msg_type_t)t)) {
                        cr_expect_eq(to, ORDO_TOPIC__COUNT, "%s", name);
                        continue;
                }
                cr_expect_neq(to, ORDO_TOPIC__COUNT, "%s", name);
                cr_expect(strstr(ordo_topic_short(to), "-commands"), "%s",
                          name);
        }
        cr_expect_eq(ordo_command_topic(ORDO_MSG_TICK),
                     ORDO_TOPIC_ORDER_COMMANDS);
        cr_expect_eq(ordo_command_topic(ORDO_MSG_BIND_REFERRER),
                     ORDO_TOPIC_REFERRAL_COMMANDS);
}

/* Every routed type names a topic of DESIGN.md. */
Test(routes, every_route_is_a_topic) {
        int t;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                const char *to = ordo_msg_routed_to((ordo_msg_type_t)t);
                if (t == ORDO_MSG_COMMAND_REJECTED) {
                        cr_expect_null(to);
                        continue;
                }
                cr_assert_not_null(to);
                cr_expect_neq(ordo_topic_from_short(to), ORDO_TOPIC__COUNT,
                              "%s: %s", ordo_msg_type_name(t), to);
        }
}

/* Each command is valid input of exactly the processor reading its topic;
 * the commission processor takes the order events and CommandRejected. */
Test(routes, processors_accept_what_is_routed_to_them) {
        int t, i, n;
        for (t = ORDO_MSG_NONE + 1; t < ORDO_MSG__COUNT; t++) {
                ordo_msg_type_t type = (ordo_msg_type_t)t;
                for (i = n = 0; i < 4; i++)
                        n += ordo_processors[i]->accepts(type);
                if (!ordo_msg_is_event(type))
                        cr_expect_eq(n, 1, "%s", ordo_msg_type_name(type));
        }
        cr_expect(ordo_processor_commission.accepts(ORDO_MSG_ORDER_PAID));
        cr_expect(ordo_processor_commission.accepts(ORDO_MSG_COMMAND_REJECTED));
        cr_expect(!ordo_processor_commission.accepts(ORDO_MSG_STOCK_RESERVED));
        cr_expect(!ordo_processor_order.accepts(ORDO_MSG_COMMAND_REJECTED));
        cr_expect(ordo_processor_order.accepts(ORDO_MSG_TICK));
        cr_expect(!ordo_processor_activity.accepts(ORDO_MSG_TICK));
}
