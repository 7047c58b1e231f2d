/*
 * cohort_bench.c -- cohort-bench: the command line, the suite registry and
 * the harness every suite uses (clock, threads, plain reads, reporting).
 *
 *   cohort-bench SUITE [--json | --json-file PATH] [--quick] [--ann-n N]
 *                [--ann-serial]
 *
 * SUITE is a name from BENCH_SUITES (bench_int.h) or `all`. --json prints one
 * JSON object per figure and line on stdout ({"suite", "metric", "value",
 * "unit", ...} plus the machine, its core count and the date); without it a
 * table for a reader. --json-file PATH prints the table and writes the JSON
 * lines to PATH as well (what `make bench` does: one run gives both the
 * terminal's table and bench/report.py's input). --quick shrinks sizes and run lengths for a smoke run.
 * --ann-n sets the size of the ann suite's synthetic set (1000000 for the
 * full-size figure; building it on one thread takes minutes a library).
 * Exit status: 0, 1 when a suite failed, 2 on a usage error.
 *
 * Timed runs (bench_run) put every thread behind a barrier and stop all of
 * them once the first sees its time is up, so an aggregate rate is the rate
 * of N threads really running at once. Each figure is run ctx->reps times;
 * suites report the best run (least disturbed by other load on the machine)
 * and the median next to it.
 */
#include "bench_int.h"
#include "cohort.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------ */
typedef struct bench_suite {
	const char *name;
	const char *desc;
	bench_suite_fn run;
} bench_suite;

static const bench_suite suites[] = {
#define BENCH_X_ENTRY(name, desc) { #name, desc, bench_##name },
	BENCH_SUITES(BENCH_X_ENTRY)
#undef BENCH_X_ENTRY
};
#define NSUITES (sizeof suites / sizeof suites[0])

/* ------------------------------------------------------------------------
 * Time, memory, process
 * ------------------------------------------------------------------------ */
double bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void *bench_alloc(size_t size)
{
	size = (size + 63) & ~(size_t)63;
	if (size == 0)
		size = 64;
	void *p = aligned_alloc(64, size);
	if (!p) {
		fprintf(stderr, "cohort-bench: out of memory (%zu bytes)\n", size);
		exit(1);
	}
	memset(p, 0, size);
	return p;
}

uint64_t bench_rss(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long long size = 0, resident = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static volatile double bench_sink_slot;

void bench_sink(double x)
{
	bench_sink_slot = bench_sink_slot + x;
}

/* ------------------------------------------------------------------------
 * Plain reads. One body, compiled for the default target and, on x86-64,
 * for AVX2 and AVX-512: a 64-byte vector type becomes four, two or one
 * registers. Four accumulators so the loop is bound by loads, not by the
 * latency of one add chain.
 * ------------------------------------------------------------------------ */
typedef float vf16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) float
sum_body(const float *a, const float *b, size_t n)
{
	vf16 acc0 = { 0 }, acc1 = { 0 }, acc2 = { 0 }, acc3 = { 0 };
	const vf16 *va = (const vf16 *)a;
	const vf16 *vb = (const vf16 *)b;
	size_t nv = n / 64 * 4, i;
	float total = 0;

	if (b) {
		for (i = 0; i < nv; i += 4) {
			acc0 += va[i] + vb[i];
			acc1 += va[i + 1] + vb[i + 1];
			acc2 += va[i + 2] + vb[i + 2];
			acc3 += va[i + 3] + vb[i + 3];
		}
	} else {
		for (i = 0; i < nv; i += 4) {
			acc0 += va[i];
			acc1 += va[i + 1];
			acc2 += va[i + 2];
			acc3 += va[i + 3];
		}
	}
	acc0 += acc1 + acc2 + acc3;
	for (i = 0; i < 16; i++)
		total += acc0[i];
	for (i = nv * 16; i < n; i++)
		total += a[i] + (b ? b[i] : 0.0f);
	return total;
}

static float sum_default(const float *a, const float *b, size_t n)
{
	return sum_body(a, b, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2")))
static float sum_avx2(const float *a, const float *b, size_t n)
{
	return sum_body(a, b, n);
}

__attribute__((target("avx512f")))
static float sum_avx512(const float *a, const float *b, size_t n)
{
	return sum_body(a, b, n);
}
#endif

typedef float (*sum_fn)(const float *a, const float *b, size_t n);

static sum_fn pick_sum(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return sum_avx512;
	if (__builtin_cpu_supports("avx2"))
		return sum_avx2;
#endif
	return sum_default;
}

static sum_fn the_sum;   /* set once in main, before any thread starts */

static const char *sum_isa(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (the_sum == sum_avx512)
		return "avx512";
	if (the_sum == sum_avx2)
		return "avx2";
#endif
	return "generic";
}

float bench_read_sum(const float *a, size_t n)
{
	return the_sum(a, NULL, n);
}

float bench_read_sum2(const float *a, const float *b, size_t n)
{
	return the_sum(a, b, n);
}

/* ------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------ */
typedef struct run_shared {
	pthread_barrier_t barrier;
	bench_batch_fn fn;
	double seconds;
	atomic_int stop;
} run_shared;

typedef struct run_thread {
	run_shared *sh;
	void *targ;
	pthread_t tid;
	uint64_t ops;
	double start, end, cpu;
	char pad[64];            /* keep threads' counters off one line */
} run_thread;

static double thread_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *run_main(void *p)
{
	run_thread *rt = p;
	run_shared *sh = rt->sh;
	uint64_t ops = 0;

	pthread_barrier_wait(&sh->barrier);
	double cpu0 = thread_cpu();
	double start = bench_now(), t = start;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed)) {
		uint64_t n = sh->fn(rt->targ);
		ops += n;
		t = bench_now();
		if (n == 0 || t - start >= sh->seconds) {
			atomic_store_explicit(&sh->stop, 1, memory_order_relaxed);
			break;
		}
	}
	rt->ops = ops;
	rt->start = start;
	rt->end = bench_now();
	rt->cpu = thread_cpu() - cpu0;
	return NULL;
}

int bench_run(int nthreads, double seconds, bench_batch_fn fn,
	      void *const *targs, bench_result *out)
{
	run_shared sh;
	run_thread *rt = bench_alloc(sizeof *rt * (size_t)nthreads);

	sh.fn = fn;
	sh.seconds = seconds;
	atomic_init(&sh.stop, 0);
	if (pthread_barrier_init(&sh.barrier, NULL, (unsigned)nthreads) != 0) {
		fprintf(stderr, "cohort-bench: pthread_barrier_init failed\n");
		free(rt);
		return -1;
	}
	for (int i = 0; i < nthreads; i++) {
		rt[i].sh = &sh;
		rt[i].targ = targs[i];
		if (pthread_create(&rt[i].tid, NULL, run_main, &rt[i]) != 0) {
			/* The threads already started wait at the barrier for
			 * good: nothing to join, give up. */
			fprintf(stderr, "cohort-bench: pthread_create failed\n");
			exit(1);
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(rt[i].tid, NULL);
	pthread_barrier_destroy(&sh.barrier);

	double first = rt[0].start, last = rt[0].end, cpu = 0;
	uint64_t ops = 0;
	for (int i = 0; i < nthreads; i++) {
		ops += rt[i].ops;
		cpu += rt[i].cpu;
		if (rt[i].start < first)
			first = rt[i].start;
		if (rt[i].end > last)
			last = rt[i].end;
	}
	out->ops = ops;
	out->seconds = last - first;
	out->ops_per_s = out->seconds > 0 ? (double)ops / out->seconds : 0;
	out->cpu_share = out->seconds > 0 ?
		cpu / ((double)nthreads * out->seconds) : NAN;
	free(rt);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

void bench_stats_of(double *rates, int n, bench_stats *out)
{
	qsort(rates, (size_t)n, sizeof *rates, cmp_double);
	out->runs = n;
	out->cpu_share = NAN;
	out->best = n ? rates[n - 1] : 0;
	if (n == 0)
		out->median = 0;
	else if (n % 2)
		out->median = rates[n / 2];
	else
		out->median = (rates[n / 2 - 1] + rates[n / 2]) / 2;
}

int bench_measure(const bench_ctx *ctx, int nthreads, bench_batch_fn fn,
		  void *const *targs, bench_stats *out)
{
	double rates[64], best = -1, share = NAN;
	int n = ctx->reps < 64 ? ctx->reps : 64;
	for (int i = 0; i < n; i++) {
		bench_result r;
		if (bench_run(nthreads, ctx->seconds, fn, targs, &r) != 0)
			return -1;
		rates[i] = r.ops_per_s;
		if (r.ops_per_s > best) {
			best = r.ops_per_s;
			share = r.cpu_share;
		}
	}
	bench_stats_of(rates, n, out);
	out->cpu_share = share;
	return 0;
}

/* ------------------------------------------------------------------------
 * Reporting
 * ------------------------------------------------------------------------ */
bench_line bench_line_make(const char *metric, double value, const char *unit,
			   int threads)
{
	bench_line l;
	memset(&l, 0, sizeof l);
	l.metric = metric;
	l.value = value;
	l.unit = unit;
	l.threads = threads;
	return l;
}

void bench_line_num(bench_line *l, const char *key, double num)
{
	if (l->nextra >= BENCH_MAX_EXTRA)
		return;
	l->extra[l->nextra].key = key;
	l->extra[l->nextra].kind = BENCH_NUM;
	l->extra[l->nextra].num = num;
	l->nextra++;
}

void bench_line_str(bench_line *l, const char *key, const char *str)
{
	if (l->nextra >= BENCH_MAX_EXTRA)
		return;
	l->extra[l->nextra].key = key;
	l->extra[l->nextra].kind = BENCH_STR;
	l->extra[l->nextra].str = str;
	l->nextra++;
}

void bench_line_bool(bench_line *l, const char *key, bool b)
{
	if (l->nextra >= BENCH_MAX_EXTRA)
		return;
	l->extra[l->nextra].key = key;
	l->extra[l->nextra].kind = BENCH_BOOL;
	l->extra[l->nextra].num = b;
	l->nextra++;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double x)
{
	if (!isfinite(x))
		fputs("null", f);
	else
		fprintf(f, "%.10g", x);
}

/* A number for a reader: thousands grouped from 10,000 and for whole
 * numbers, else 3 decimals. */
static void human_num(char *buf, size_t len, double x)
{
	if (!isfinite(x)) {
		snprintf(buf, len, "-");
		return;
	}
	if (fabs(x) < 10000 && x != floor(x)) {
		snprintf(buf, len, "%.3f", x);
		return;
	}
	char digits[32], out[48];
	snprintf(digits, sizeof digits, "%.0f", fabs(x));
	size_t nd = strlen(digits), o = 0;
	if (x < 0)
		out[o++] = '-';
	for (size_t i = 0; i < nd; i++) {
		if (i && (nd - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	out[o] = 0;
	snprintf(buf, len, "%s", out);
}

/* The 1-minute load average: how busy the machine was around a figure
 * (this run's own threads included). */
static double load1(void)
{
	FILE *f = fopen("/proc/loadavg", "r");
	double x = NAN;
	if (f) {
		if (fscanf(f, "%lf", &x) != 1)
			x = NAN;
		fclose(f);
	}
	return x;
}

static void json_line(FILE *f, const bench_ctx *ctx, const bench_line *l)
{
	fprintf(f, "{\"suite\": ");
	json_str(f, ctx->suite);
	fprintf(f, ", \"metric\": ");
	json_str(f, l->metric);
	fprintf(f, ", \"value\": ");
	json_num(f, l->value);
	fprintf(f, ", \"unit\": ");
	json_str(f, l->unit);
	if (l->threads > 0)
		fprintf(f, ", \"threads\": %d", l->threads);
	for (int i = 0; i < l->nextra; i++) {
		fprintf(f, ", ");
		json_str(f, l->extra[i].key);
		fprintf(f, ": ");
		if (l->extra[i].kind == BENCH_STR)
			json_str(f, l->extra[i].str);
		else if (l->extra[i].kind == BENCH_BOOL)
			fprintf(f, "%s", l->extra[i].num != 0 ? "true" : "false");
		else
			json_num(f, l->extra[i].num);
	}
	if (ctx->quick)
		fprintf(f, ", \"quick\": true");
	fprintf(f, ", \"load1\": ");
	json_num(f, load1());
	fprintf(f, ", \"machine\": ");
	json_str(f, ctx->machine);
	fprintf(f, ", \"cores\": %d, \"date\": ", ctx->cores);
	json_str(f, ctx->date);
	fprintf(f, "}\n");
	fflush(f);
}

static void table_line(const bench_ctx *ctx, const bench_line *l)
{
	char value[48], threads[16] = "";
	human_num(value, sizeof value, l->value);
	if (l->threads > 0)
		snprintf(threads, sizeof threads, "%d", l->threads);
	printf("%-8s %-24s %3s %16s %-8s", ctx->suite, l->metric,
	       threads, value, l->unit);
	for (int i = 0; i < l->nextra; i++) {
		printf(" %s=", l->extra[i].key);
		if (l->extra[i].kind == BENCH_STR) {
			printf("%s", l->extra[i].str);
		} else if (l->extra[i].kind == BENCH_BOOL) {
			printf("%s", l->extra[i].num != 0 ? "yes" : "NO");
		} else {
			char num[48];
			human_num(num, sizeof num, l->extra[i].num);
			printf("%s", num);
		}
	}
	printf("\n");
	fflush(stdout);
}

void bench_report(const bench_ctx *ctx, const bench_line *l)
{
	if (ctx->json) {
		json_line(stdout, ctx, l);
		return;
	}
	table_line(ctx, l);
	if (ctx->json_file)
		json_line(ctx->json_file, ctx, l);
}

void bench_note(const bench_ctx *ctx, const char *fmt, ...)
{
	FILE *f = ctx->json ? stderr : stdout;
	va_list ap;
	fprintf(f, "# %s: ", ctx->suite);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
}

/* ------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------ */
static void machine_info(bench_ctx *ctx)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[512];

	snprintf(ctx->machine, sizeof ctx->machine, "unknown");
	while (f && fgets(line, sizeof line, f)) {
		if (strncmp(line, "model name", 10) != 0)
			continue;
		char *v = strchr(line, ':');
		if (!v)
			continue;
		v++;
		while (*v == ' ' || *v == '\t')
			v++;
		v[strcspn(v, "\n")] = 0;
		snprintf(ctx->machine, sizeof ctx->machine, "%s", v);
		break;
	}
	if (f)
		fclose(f);
	ctx->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);

	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(ctx->date, sizeof ctx->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: cohort-bench SUITE [--json | --json-file PATH] "
		   "[--quick] [--ann-n N] [--ann-serial]\n"
		   "  SUITE    one of the suites below, or `all`\n"
		   "  --json   one JSON object per figure and line\n"
		   "  --json-file PATH  the table on stdout, the JSON lines "
		   "into PATH\n"
		   "  --quick  small sizes and short runs (smoke test)\n"
		   "  --ann-n  vectors in the ann suite's synthetic set "
		   "(default 200000)\n"
		   "  --ann-serial  the ann suite runs FAISS after cohort and "
		   "hnswlib\n"
		   "           (default: in its own process beside them, one "
		   "thread each)\n"
		   "suites:\n");
	for (size_t i = 0; i < NSUITES; i++)
		fprintf(f, "  %-8s %s\n", suites[i].name, suites[i].desc);
}

/* cpu seconds of this process and of its children waited for so far */
static double process_cpu(void)
{
	struct rusage self, kids;
	getrusage(RUSAGE_SELF, &self);
	getrusage(RUSAGE_CHILDREN, &kids);
	return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec +
			kids.ru_utime.tv_sec + kids.ru_stime.tv_sec) +
	       (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec +
			kids.ru_utime.tv_usec + kids.ru_stime.tv_usec) * 1e-6;
}

/* Run one suite, then report how long it took (suite_seconds: what `make
 * bench` must keep under its budget; cpu_s beside it, since on a shared
 * machine the wall time also counts the others' work). */
static int run_suite(bench_ctx *ctx, const bench_suite *s)
{
	ctx->suite = s->name;
	double t0 = bench_now(), cpu0 = process_cpu();
	int rc = s->run(ctx);
	if (rc != 0) {
		fprintf(stderr, "cohort-bench: suite %s failed\n", s->name);
		return rc;
	}
	bench_line l = bench_line_make("suite_seconds", bench_now() - t0, "s", 0);
	bench_line_num(&l, "cpu_s", process_cpu() - cpu0);
	bench_line_str(&l, "what", "wall time of the whole suite; cpu_s: of "
		       "this process and the processes it ran and waited for "
		       "(FAISS, the servers)");
	bench_report(ctx, &l);
	return rc;
}

int bench_fail(const char *suite, const char *what, int rc)
{
	fprintf(stderr, "cohort-bench %s: %s: %s (%d)%s%s\n", suite, what,
		cohort_strerror(rc), rc, *cohort_errdetail() ? ": " : "",
		cohort_errdetail());
	return 1;
}

int main(int argc, char **argv)
{
	bench_ctx ctx;
	const char *name = NULL, *json_path = NULL;

	memset(&ctx, 0, sizeof ctx);
	/* internal: a fresh process that opens a database and prints how
	 * long that took (the wal suite's restart figure) */
	if (argc == 3 && strcmp(argv[1], "--open-probe") == 0)
		return bench_open_probe(argv[2]);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			ctx.json = true;
		} else if (strcmp(argv[i], "--json-file") == 0 && i + 1 < argc) {
			json_path = argv[++i];
		} else if (strcmp(argv[i], "--ann-serial") == 0) {
			ctx.ann_serial = true;
		} else if (strcmp(argv[i], "--quick") == 0) {
			ctx.quick = true;
		} else if (strcmp(argv[i], "--ann-n") == 0 && i + 1 < argc) {
			char *end;
			unsigned long long n = strtoull(argv[++i], &end, 10);
			if (*end || n < 100 || n > UINT32_MAX) {
				fprintf(stderr, "cohort-bench: --ann-n wants a "
					"count from 100 to %u\n", UINT32_MAX);
				return 2;
			}
			ctx.ann_n = (size_t)n;
		} else if (strcmp(argv[i], "-h") == 0 ||
			   strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' || name) {
			fprintf(stderr, "cohort-bench: unexpected argument '%s'\n",
				argv[i]);
			usage(stderr);
			return 2;
		} else {
			name = argv[i];
		}
	}
	if (!name) {
		usage(stderr);
		return 2;
	}

	const bench_suite *one = NULL;
	if (strcmp(name, "all") != 0) {
		for (size_t i = 0; i < NSUITES; i++)
			if (strcmp(suites[i].name, name) == 0)
				one = &suites[i];
		if (!one) {
			fprintf(stderr, "cohort-bench: no suite '%s'\n", name);
			usage(stderr);
			return 2;
		}
	}

	if (json_path && ctx.json) {
		fprintf(stderr, "cohort-bench: --json and --json-file: one or "
			"the other\n");
		return 2;
	}
	if (json_path && !(ctx.json_file = fopen(json_path, "w"))) {
		fprintf(stderr, "cohort-bench: cannot write %s: %s\n",
			json_path, strerror(errno));
		return 2;
	}
	if (json_path) {
		const char *slash = strrchr(json_path, '/');
		int n = slash ? (int)(slash - json_path) + 1 : 0;
		snprintf(ctx.out_dir, sizeof ctx.out_dir, "%.*s", n, json_path);
		if (!n)
			snprintf(ctx.out_dir, sizeof ctx.out_dir, "./");
	}

	the_sum = pick_sum();
	machine_info(&ctx);
	ctx.seconds = ctx.quick ? 0.05 : 0.5;
	ctx.reps = ctx.quick ? 2 : 5;
	if (!ctx.json)
		printf("# cohort-bench %s on %s, %d cores, %s; each figure: best "
		       "of %d runs of %.2f s (median beside it); plain reads: %s\n"
		       "%-8s %-24s %3s %16s %-8s details\n",
		       name, ctx.machine, ctx.cores, ctx.date, ctx.reps,
		       ctx.seconds, sum_isa(), "suite", "metric", "thr",
		       "value", "unit");

	int failed = 0;
	if (one)
		failed = run_suite(&ctx, one) != 0;
	else
		for (size_t i = 0; i < NSUITES; i++)
			failed |= run_suite(&ctx, &suites[i]) != 0;
	if (ctx.json_file && (ferror(ctx.json_file) | fclose(ctx.json_file))) {
		fprintf(stderr, "cohort-bench: writing %s failed\n", json_path);
		failed = 1;
	}
	return failed ? 1 : 0;
}
