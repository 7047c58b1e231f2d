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

/* What the rendering reports besides the counters: the data directory
 * (NULL: in memory; its log and snapshot files are measured at scrape
 * time) and the server's I/O path (server_io_path). Copied; call before
 * the server starts. */
void metrics_set_info(metrics *m, const char *dir, const char *server_io);

/* The Prometheus text exposition (format 0.0.4) of m and db into a
 * malloc'd NUL-terminated string; NULL on out of memory. */
char *metrics_render(metrics *m, cohort_db *db);

/*
 * The /metrics endpoint: one thread serving GET /metrics over HTTP/1.0 on
 * listen ("HOST:PORT"), one request at a time (404 for other paths, 405
 * for other methods). m and db must outlive it. Returns 0 and *out, or a
 * negative COHORT_E* code with the reason in err. *port (may be NULL)
 * gets the bound port.
 */
typedef struct metrics_http metrics_http;
int metrics_http_start(metrics *m, cohort_db *db, const char *listen,
		       metrics_http **out, int *port, char *err,
		       size_t err_len);
/* Stop the thread and free it (before the database closes). NULL: no-op. */
void metrics_http_stop(metrics_http *h);

#endif /* COHORT_METRICS_H */
