/*
 * Test helper: deletes the topics a test's prefix made on the shared
 * broker.
 */
#ifndef ORDO_TEST_DROP_TOPICS_H
#define ORDO_TEST_DROP_TOPICS_H

#include "config.h"

/* Best effort, at most 10 s: every topic of c's topic.prefix (left
 * behind, each run of the C integration suites added over 600 topics to
 * the shared broker). Nothing for the unreachable broker 127.0.0.1:1 of
 * the back-pressure tests, which made none. */
void ordo_test_drop_topics(const ordo_config_t *c);

#endif
