/*
 * metrics.h -- cohortd's counters and the Prometheus text endpoint.
 *
 * Counters are atomics updated by every event-loop thread without locks;
 * rendering reads them (and the database's state) at scrape time.
 */
#ifndef COHORT_METRICS_H
#define COHORT_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "cohort.h"

typedef struct metrics metrics;

metrics *metrics_new(void);
void metrics_free(metrics *m);

/* One request of opcode op answered with status in ns nanoseconds. */
void metrics_request(metrics *m, int op, int status, uint64_t ns);
/* Connections opened and closed; bytes in and out. */
void metrics_conn(metrics *m, int delta);
void metrics_bytes(metrics *m, uint64_t in, uint64_t out);

/* The Prometheus text exposition (format 0.0.4) of m and db into a
 * malloc'd NUL-terminated string; NULL on out of memory. */
char *metrics_render(metrics *m, cohort_db *db);

#endif /* COHORT_METRICS_H */
