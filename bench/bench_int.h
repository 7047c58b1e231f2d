/*
 * bench_int.h -- the harness shared by the suites of cohort-bench.
 *
 * cohort-bench runs named suites; each suite is one file bench/bench_NAME.c
 * defining `int bench_NAME(bench_ctx *ctx)` and one line in BENCH_SUITES
 * below. A suite measures, then reports each figure with bench_report(): one
 * JSON object per line with --json, an aligned table otherwise.
 *
 * What the harness gives a suite:
 *   - the clock: bench_now() in seconds, CLOCK_MONOTONIC;
 *   - a deterministic PRNG (xoshiro256**, seeded through splitmix64), one
 *     state per thread, never shared;
 *   - bench_run(): run a batch function on N threads that start together
 *     behind a barrier and stop together, and aggregate their ops/s;
 *     bench_measure(): the same repeated ctx->reps times, best and median;
 *   - plain memory-read loops (bench_read_sum*) as the bandwidth yardstick.
 *
 * Threads: bench_ctx is read-only once a suite runs; each thread of
 * bench_run() gets its own argument and must keep its state there.
 */
#ifndef BENCH_INT_H
#define BENCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The registry: X(name, description). Adding a suite is adding its file and
 * one line here. */
#define BENCH_SUITES(X)                                                       \
	X(store, "get, get_many, put, event, filter scan, memory per row")   \
	X(wal, "events/s under each fsync policy, group commit, fdatasync") \
	X(persona, "nearest-centroid assignment vs the multiply-add peak") \
	X(ann, "HNSW recall/QPS, build, memory vs hnswlib and FAISS")     \
	X(net, "cohortd vs redis-server on loopback: get, get_many, durable writes, knn")

typedef struct bench_ctx {
	bool json;               /* --json: one JSON object per line */
	FILE *json_file;         /* --json-file PATH: the same objects into
	                            PATH, the table on stdout; NULL: none */
	char out_dir[256];       /* where suites write side files (the ann
	                            curves): PATH's folder under --json-file
	                            (bench/report.py draws the docs' plots
	                            from the JSON); "" otherwise: docs/ */
	bool quick;              /* --quick: small sizes, short runs (smoke) */
	size_t ann_n;            /* --ann-n N: vectors of the ann suite's
	                            synthetic set; 0: its default */
	bool ann_serial;         /* --ann-serial: the ann suite runs FAISS
	                            after cohort and hnswlib, not beside them */
	const char *suite;       /* the suite being run, for bench_report */
	double seconds;          /* length of one timed run */
	int reps;                /* timed runs per figure */
	char machine[128];       /* cpu model from /proc/cpuinfo */
	int cores;               /* online cpus */
	char date[32];           /* start of the run, UTC, ISO 8601 */
} bench_ctx;

typedef int (*bench_suite_fn)(bench_ctx *ctx);

#define BENCH_X_PROTO(name, desc) int bench_##name(bench_ctx *ctx);
BENCH_SUITES(BENCH_X_PROTO)
#undef BENCH_X_PROTO

/* The ann suite's part inside the store: filtered recall and the cost of
 * an index to ingest (bench_ann_store.c). */
int bench_ann_store(bench_ctx *ctx);

/* ------------------------------------------------------------------------
 * Time
 * ------------------------------------------------------------------------ */

/* Seconds on CLOCK_MONOTONIC, from an arbitrary origin. */
double bench_now(void);

/* ------------------------------------------------------------------------
 * PRNG: xoshiro256** (Blackman and Vigna), seeded with splitmix64 so that
 * any 64-bit seed, 0 included, gives a good state.
 * ------------------------------------------------------------------------ */
typedef struct bench_rng {
	uint64_t s[4];
} bench_rng;

static inline uint64_t bench_splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void bench_rng_seed(bench_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = bench_splitmix64(&seed);
}

static inline uint64_t bench_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static inline uint64_t bench_rng_next(bench_rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = bench_rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = bench_rotl(s[3], 45);
	return result;
}

/* Uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias is below
 * n / 2^64, far under anything a benchmark can see). */
static inline uint64_t bench_rng_below(bench_rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

/* Uniform float in [0, 1): the top 24 bits. */
static inline float bench_rng_float(bench_rng *r)
{
	return (float)(bench_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* ------------------------------------------------------------------------
 * Running work on threads
 * ------------------------------------------------------------------------ */

/* Do one batch of operations with the thread's own argument; return how
 * many operations it did (0 stops this thread). A batch should take well
 * under a millisecond so that threads stop together, and long enough that
 * reading the clock after it costs nothing. */
typedef uint64_t (*bench_batch_fn)(void *targ);

typedef struct bench_result {
	double ops_per_s;        /* aggregate over all threads */
	uint64_t ops;            /* total operations */
	double seconds;          /* wall time from the common start to the last stop */
	double cpu_share;        /* cpu time the threads got / (threads x wall):
	                            below 1 when others shared the cores */
} bench_result;

/*
 * Run fn on nthreads threads (thread i gets targs[i]) for about `seconds`:
 * the threads wait at a barrier, start together, and all stop at their next
 * batch boundary once the first one sees the time is up, so the aggregate
 * measures them running at the same time. Returns 0, or -1 if a thread
 * could not be started (reported on stderr).
 */
int bench_run(int nthreads, double seconds, bench_batch_fn fn,
	      void *const *targs, bench_result *out);

typedef struct bench_stats {
	double best;             /* highest ops/s of the runs */
	double median;           /* median ops/s of the runs */
	double cpu_share;        /* of the best run; NaN when unknown */
	int runs;
} bench_stats;

/* bench_run ctx->reps times; best and median ops/s, the best's cpu share. */
int bench_measure(const bench_ctx *ctx, int nthreads, bench_batch_fn fn,
		  void *const *targs, bench_stats *out);

/* Best and median of n rates (sorts rates in place); cpu_share NaN. */
void bench_stats_of(double *rates, int n, bench_stats *out);

/* ------------------------------------------------------------------------
 * Plain reads, the bandwidth yardstick: sums with independent vector
 * accumulators, at the widest SIMD the cpu has (chosen at run time), so
 * that they run at the speed of the memory and not of an add chain.
 * The arrays must be 64-byte aligned and n a multiple of 64.
 * ------------------------------------------------------------------------ */
float bench_read_sum(const float *a, size_t n);
float bench_read_sum2(const float *a, const float *b, size_t n);

/* Keep a value alive so the compiler cannot drop the work that made it. */
void bench_sink(double x);

/* 64-byte aligned, zeroed memory for size bytes (rounded up to 64);
 * aborts with a message when out of memory (top level of a program). */
void *bench_alloc(size_t size);

/* Resident set size of the process in bytes, from /proc/self/statm. */
uint64_t bench_rss(void);

/* ------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------ */
#define BENCH_MAX_EXTRA 12

typedef struct bench_line {
	const char *metric;
	double value;            /* NaN/inf print as null */
	const char *unit;
	int threads;             /* 0: not applicable, not printed */
	int nextra;
	struct {
		const char *key;
		enum { BENCH_NUM, BENCH_STR, BENCH_BOOL } kind;
		const char *str;
		double num;      /* BENCH_NUM; BENCH_BOOL: nonzero is true */
	} extra[BENCH_MAX_EXTRA];
} bench_line;

/* A line for metric, value, unit; threads 0 when not applicable. */
bench_line bench_line_make(const char *metric, double value, const char *unit,
			   int threads);
/* More fields; key and str must live until bench_report. Extra fields past
 * BENCH_MAX_EXTRA are dropped. */
void bench_line_num(bench_line *l, const char *key, double num);
void bench_line_str(bench_line *l, const char *key, const char *str);
void bench_line_bool(bench_line *l, const char *key, bool b);

/* cohort-bench --open-probe DIR: open the database in DIR, print the
 * seconds it took on stdout, close; exit status 0 when it worked. Run as a
 * fresh process, it is what a restart costs. (bench_wal.c) */
int bench_open_probe(const char *dir);

/* Report a failed cohort call of a suite on stderr (the code, its message
 * and the call's detail); returns 1, a suite's failure. */
int bench_fail(const char *suite, const char *what, int rc);

/* Print one figure of ctx->suite. */
void bench_report(const bench_ctx *ctx, const bench_line *l);

/* A note for the reader (table mode only; JSON mode prints it on stderr so
 * that stdout stays one object per line). */
void bench_note(const bench_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif /* BENCH_INT_H */
