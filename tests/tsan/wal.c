/*
 * wal.c -- ThreadSanitizer: the log's group commit on both I/O paths and
 * under every policy: writers that append and wait (leaders and followers
 * under always), writers that append and never wait (the writer thread's
 * groups), event-loop threads that start syncs without waiting and sleep
 * on their eventfd (registering and unregistering it as they go), and a
 * thread calling wal_flush meanwhile; then the log must replay every
 * record once, in LSN order.
 */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <string.h>
#include <unistd.h>

#include "tsan_common.h"
#include "wal_int.h"

#define NWAIT 6
#define NNOWAIT 2
#define NLOOP 2
#define NPER 300

static wal *w;
static int policy;

/* read-only: every tenth waiter record is this big, so that a direct log
 * passes half of its first 16 MiB of zeros and the first writer thread
 * writes the next ones while groups go on */
static const char big[48 << 10];

static void *waiter(void *arg)
{
	(void)arg;
	for (int i = 0; i < NPER; i++) {
		uint64_t lsn;
		if (i % 10 == 9)
			CHECK(wal_append(w, 1, big, sizeof big, &lsn));
		else
			CHECK(wal_append(w, 1, &i, sizeof i, &lsn));
		CHECK(wal_sync(w, lsn));
		EXPECT(policy != COHORT_FSYNC_ALWAYS ||
		       wal_durable_lsn(w) >= lsn, "sync returned early");
	}
	return NULL;
}

static void *appender(void *arg)
{
	(void)arg;
	for (int i = 0; i < NPER; i++) {
		uint64_t lsn;
		CHECK(wal_append(w, 2, &i, sizeof i, &lsn));
		if (i % 50 == 0)
			usleep(1000);
	}
	return NULL;
}

/* cohortd's loops: append a few, start, poll the eventfd, check. */
static void *evloop(void *arg)
{
	(void)arg;
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	EXPECT(efd >= 0, "eventfd");
	for (int i = 0; i < NPER; i += 3) {
		if (i % 60 == 0)
			CHECK(wal_notify(w, efd, true));
		uint64_t lsn = 0;
		for (int j = i; j < i + 3 && j < NPER; j++)
			CHECK(wal_append(w, 3, &j, sizeof j, &lsn));
		int rc = wal_sync_start(w, lsn, efd);
		EXPECT(rc >= 0, "start: %d", rc);
		while (policy == COHORT_FSYNC_ALWAYS &&
		       (rc = wal_sync_check(w, lsn)) == 0) {
			struct pollfd pfd = { .fd = efd, .events = POLLIN };
			poll(&pfd, 1, 100);
			uint64_t v;
			ssize_t r = read(efd, &v, sizeof v);
			(void)r;
		}
		EXPECT(rc >= 0, "check: %d", rc);
		EXPECT(policy != COHORT_FSYNC_ALWAYS ||
		       wal_durable_lsn(w) >= lsn, "check said durable early");
		if (i % 60 == 57)
			CHECK(wal_notify(w, efd, false));
	}
	CHECK(wal_notify(w, efd, false));
	close(efd);
	return NULL;
}

static void *flusher(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; i++) {
		CHECK(wal_flush(w));
		usleep(500);
	}
	return NULL;
}

static int count_cb(void *ctx, uint8_t type, uint64_t lsn,
		    const uint8_t *payload, uint32_t len)
{
	uint64_t *n = ctx;
	(void)type;
	(void)payload;
	(void)len;
	EXPECT(lsn == *n + 1, "LSN %llu after %llu", (unsigned long long)lsn,
	       (unsigned long long)*n);
	(*n)++;
	return 0;
}

static void run(int fsync, bool no_uring, bool no_direct)
{
	char dir[] = "/tmp/cohort-tsan-wal-XXXXXX";
	EXPECT(mkdtemp(dir) != NULL, "mkdtemp");
	policy = fsync;
	wal_config cfg = { fsync, 5, no_uring, no_direct };
	CHECK(wal_open(dir, &cfg, 1, &w));
	pthread_t th[NWAIT + NNOWAIT + NLOOP + 1];
	int n = 0;
	for (int i = 0; i < NWAIT; i++)
		pthread_create(&th[n++], NULL, waiter, NULL);
	for (int i = 0; i < NNOWAIT; i++)
		pthread_create(&th[n++], NULL, appender, NULL);
	for (int i = 0; i < NLOOP; i++)
		pthread_create(&th[n++], NULL, evloop, NULL);
	pthread_create(&th[n++], NULL, flusher, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	CHECK(wal_close(w));
	uint64_t count = 0, last;
	CHECK(wal_replay(dir, 0, false, count_cb, &count, &last, NULL, 0));
	EXPECT(count == (uint64_t)(NWAIT + NNOWAIT + NLOOP) * NPER,
	       "replayed %llu records", (unsigned long long)count);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	EXPECT(system(cmd) == 0, "rm");
}

int main(void)
{
	for (int p = 0; p < 2; p++) {
		run(COHORT_FSYNC_ALWAYS, p, false);   /* direct, groups in flight */
		run(COHORT_FSYNC_ALWAYS, p, true);    /* buffered */
		run(COHORT_FSYNC_INTERVAL, p, false);
		run(COHORT_FSYNC_NONE, p, false);
	}
	puts("tsan wal: ok");
	return 0;
}
