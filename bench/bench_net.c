/*
 * bench_net.c -- suite `net`: cohortd against redis-server over loopback, in
 * the same run, driven by one load generator (issue 6, benchmarks).
 *
 * The servers. cohortd is the one built next to this program
 * (/proc/self/exe's directory), started on 127.0.0.1:0 with --port-file,
 * a token file (one admin token, mode 0600) and --threads = cohortd's
 * default (cores - 1, at least 1; on 2 cores one loop beat two in
 * alternated runs, docs/benchmarks.md);
 * redis-server is Debian's, on a free loopback port, with --save '' so that
 * no background save forks during a figure. Each lives in a fresh directory
 * under /tmp and is stopped with SIGTERM (SIGKILL after 10 s) when its part
 * is done. For reads both keep nothing on disk (cohortd --memory, Redis
 * --appendonly no); for durable writes both are restarted empty with their
 * strongest setting (cohortd --fsync always on a directory, Redis
 * --appendonly yes --appendfsync always), their files in the same /tmp.
 *
 * The load generator. G threads (1 on up to 4 cores, cores / 4 above),
 * each with an epoll loop over its share of the connections; the same G,
 * the same connections and the same pipelining depth for both servers.
 * Closed loop: every connection keeps `depth` operations outstanding and
 * sends the next as soon as one completes. cohort's frames are built with
 * proto_req_encode and its responses read with proto_hdr_decode and
 * proto_resp_status (then the payload is checked: row present, 32 columns,
 * row statuses 0, k neighbours); Redis's commands are RESP arrays of bulk
 * strings and its replies are parsed whole (+ - : $ *) and checked the same
 * way (32 non-nil fields, a 256-byte blob). Any error reply, a wrong id, a
 * missing row or a closed connection fails the suite.
 *
 * Latency: each operation is timestamped when it is queued for sending and
 * when its last reply has been parsed; the difference goes into a log-linear
 * histogram (64 buckets an octave, under 1.6% error), from which p50, p99
 * and p999 are read. Throughput: operations completed inside the timed
 * window, after a warm-up, divided by its length; the operations still in
 * flight at its end are drained (not counted) before the next figure. Each
 * figure is run `reps` times, the servers' runs interleaved (cohort, Redis,
 * cohort, ...); the best run is reported, with its latencies, and the median
 * beside it. srv_cores is the server's cpu time (/proc/PID/stat) over the
 * window divided by the window: how much of the machine the server used.
 *
 * Workloads (N customers, keys "cust<n>", 32 f64 features f0..f31):
 *   load           cohort PUT batches of 500 rows x 32 fields; Redis HSET
 *                  of 32 fields per customer and SET cust<n>:blob of the
 *                  32 features as 256 bytes of little-endian f64 (Feast's
 *                  layout: one value per entity), 200 commands a write
 *   get            one random customer's 32 features: cohort GET naming the
 *                  32 columns, Redis HMGET of the 32 fields, Redis GET of
 *                  the blob; 1, 16 and 64 connections, depth 1, and 16
 *                  connections at depth 8
 *   get_many       100 random customers x 32 features: one cohort GET_MANY
 *                  vs 100 HMGETs sent in one write (one operation = the
 *                  100 replies), counted in customers/s
 *   event_always   one durable write on a random customer: cohort EVENT
 *                  (f64 column += 1) under --fsync always vs Redis
 *                  HINCRBYFLOAT under appendfsync always, 16 connections
 *   knn            synthetic clustered vectors (bench_ann's generator:
 *                  1024 Gaussian segments, 64-d), an HNSW index created
 *                  over the network (M 16, ef_construction 200); recall@10
 *                  of each ef against exact search (computed here), the
 *                  smallest ef reaching 0.95 is timed at 16 connections
 *
 * Ratios (JSON metrics): get_vs_redis (cohort GET / HMGET at 16
 * connections, depth 1; target >= 2), get_p99_vs_redis (cohort's p99 over
 * HMGET's there: <= 1 wanted), get_vs_redis_blob (the same against GET of
 * the blob), get_vs_redis_pipelined (16 connections at depth 8),
 * get_many_vs_redis (target >= 3), event_vs_redis_always (target >= 2),
 * knn_qps_net (queries/s at recall >= 0.95).
 *
 * All of it shares one machine: on a 2-core box the generator, cohortd's
 * threads and Redis's single thread take turns on the same two cores, so
 * the figures are those of a crowded machine, not of a server alone.
 */
#include "bench_int.h"
#include "cohort.h"
#include "dist.h"
#include "parallel.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEED 0x6e6574626e6368ull     /* "netbnch" */
#define NFEAT 32                     /* features per customer */
#define BLOB_LEN (NFEAT * 8)
#define MANY 100                     /* customers per get_many */
#define PUT_BATCH 500                /* rows per cohort PUT while loading */
#define RESP_BATCH 200               /* Redis commands per write while loading */
#define MAX_DEPTH 64                 /* operations in flight per connection */
#define MAX_CONNS 64
#define TOPK 10
#define TARGET_RECALL 0.95
#define RECALL_TOL 1e-5              /* relative, on squared distances */
#define KNN_DIM 64
#define KNN_SEGMENTS 1024
#define STALL_S 120.0                /* no reply for this long: give up */
#define SYNC_TIMEOUT_MS 300000       /* one synchronous call (index build) */
#define HBITS 6                      /* histogram: 2^HBITS buckets an octave */
#define HSUB (1u << HBITS)
#define HBUCKETS (HSUB + (64 - HBITS) * HSUB)

#define TARGET_GET 2.0
#define TARGET_MANY 3.0
#define TARGET_EVENT 2.0

static const int conn_counts[] = { 1, 16, 64 };
#define NCONN_COUNTS (sizeof conn_counts / sizeof conn_counts[0])
#define RATIO_CONNS 16               /* the ratios' connection count */
#define PIPE_DEPTH 8                 /* the pipelined get figure's depth */

static const uint32_t efs[] = { 10, 12, 14, 16, 20, 24, 32, 48, 64, 96, 128,
				192, 256, 384, 512, 768, 1000 };
#define NEF (sizeof efs / sizeof efs[0])

/* ------------------------------------------------------------------------
 * Sizes of a run
 * ------------------------------------------------------------------------ */
typedef struct net_sizes {
	uint32_t ncust;          /* customers */
	uint32_t knn_n, knn_nq;  /* vectors, queries */
	double warm, secs;       /* warm-up and timed window of one run */
	int reps;                /* runs per figure */
	int gen_threads;
	int srv_threads;         /* cohortd --threads */
} net_sizes;

/* ------------------------------------------------------------------------
 * Connections and workloads
 * ------------------------------------------------------------------------ */
enum { P_COHORT, P_RESP };

enum net_kind {
	W_C_PUT,                 /* load: item = batch of PUT_BATCH rows */
	W_C_PUTVEC,              /* load vectors: item = batch */
	W_C_GET,
	W_C_GET_MANY,
	W_C_EVENT,
	W_C_KNN,
	W_R_HSET,                /* load: item = batch of RESP_BATCH HSETs */
	W_R_SET,                 /* load: item = batch of RESP_BATCH SETs */
	W_R_HMGET,
	W_R_GET,
	W_R_HMGET_MANY,
	W_R_HINCR
};

typedef struct net_work {
	enum net_kind kind;
	int proto;
	uint32_t ncust;          /* keys are cust0 .. cust<ncust - 1> */
	uint32_t k, ef;          /* knn */
	const float *vecs;       /* W_C_PUTVEC: the base; W_C_KNN: queries */
	uint32_t nvecs;
	uint64_t items;          /* load: batches; 0: timed */
} net_work;

typedef struct net_op {
	double t;                /* queued at */
	uint32_t left;           /* replies still to come */
} net_op;

typedef struct net_conn {
	int fd;
	int proto;
	proto_wbuf out;          /* to send: out.buf[out_off, out.len) */
	size_t out_off;
	bool want_out;           /* EPOLLOUT armed */
	uint8_t *in;             /* received, not yet parsed */
	size_t in_len, in_cap;
	net_op ring[MAX_DEPTH];  /* operations in flight, oldest first */
	unsigned head, n;
	uint32_t next_id, expect_id;
	bench_rng rng;
} net_conn;

/* A parsed RESP reply: what the checks need. */
typedef struct resp_reply {
	char type;               /* + - : $ * */
	int64_t n;               /* integer; bulk length; array count (-1 nil) */
	uint32_t nils;           /* array: nil elements */
	const uint8_t *str;      /* + -: the line; $: the bytes */
	size_t len;
} resp_reply;

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int fail(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "cohort-bench net: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* Decimal digits of n into buf (no NUL); returns their number. */
static size_t put_u64(char *buf, uint64_t n)
{
	char tmp[20];
	size_t len = 0;
	do {
		tmp[len++] = (char)('0' + n % 10);
		n /= 10;
	} while (n);
	for (size_t i = 0; i < len; i++)
		buf[i] = tmp[len - 1 - i];
	return len;
}

/* "cust<n>" into buf (no NUL); returns its length. */
static size_t cust_key(uint64_t n, char *buf)
{
	memcpy(buf, "cust", 4);
	return 4 + put_u64(buf + 4, n);
}

/* Feature j of customer i: exact in binary, so reads can be checked. */
static double feat(uint64_t i, int j)
{
	return (double)i + (double)j / 32.0;
}

static void sleep_until(double t)
{
	double d = t - bench_now();
	if (d <= 0)
		return;
	struct timespec ts;
	ts.tv_sec = (time_t)d;
	ts.tv_nsec = (long)((d - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------
 * Histogram: log-linear over nanoseconds.
 * ------------------------------------------------------------------------ */
static unsigned hist_index(uint64_t v)
{
	if (v < HSUB)
		return (unsigned)v;
	unsigned k = 63u - (unsigned)__builtin_clzll(v);       /* >= HBITS */
	unsigned sub = (unsigned)(v >> (k - HBITS)) & (HSUB - 1);
	return HSUB + (k - HBITS) * HSUB + sub;
}

/* The middle of bucket i, in nanoseconds. */
static double hist_value(unsigned i)
{
	if (i < HSUB)
		return i;
	unsigned k = (i - HSUB) / HSUB + HBITS, sub = (i - HSUB) % HSUB;
	double lo = (double)(HSUB + sub) * ldexp(1.0, (int)(k - HBITS));
	return lo + ldexp(1.0, (int)(k - HBITS)) / 2;
}

/* The q-quantile, in microseconds; NaN when empty. */
static double hist_quantile(const uint64_t *h, uint64_t n, double q)
{
	if (n == 0)
		return NAN;
	uint64_t want = (uint64_t)ceil(q * (double)n), seen = 0;
	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < HBUCKETS; i++) {
		seen += h[i];
		if (seen >= want)
			return hist_value(i) / 1000.0;
	}
	return hist_value(HBUCKETS - 1) / 1000.0;
}

/* ------------------------------------------------------------------------
 * Processes
 * ------------------------------------------------------------------------ */
typedef struct net_srv {
	const char *name;        /* "cohortd", "redis" */
	pid_t pid;
	int port;
	char dir[64];            /* its temporary directory */
	char log[96];
} net_srv;

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 ? 0 : -1;
}

static void rm_tree(const char *dir)
{
	if (dir[0] && nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "cohort-bench net: could not remove %s: %s\n",
			dir, strerror(errno));
}

static bool path_exec(const char *name, char *out, size_t len)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(out, len, "%.*s/%s", (int)n, path, name);
		if (n > 0 && access(out, X_OK) == 0)
			return true;
		path += n;
		if (*path == ':')
			path++;
	}
	/* not on PATH: Debian puts it here */
	snprintf(out, len, "/usr/bin/%s", name);
	return access(out, X_OK) == 0;
}

/* cohortd beside this program. */
static bool cohortd_path(char *out, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n <= 0)
		return false;
	self[n] = 0;
	char *slash = strrchr(self, '/');
	if (!slash)
		return false;
	*slash = 0;
	if ((size_t)snprintf(out, len, "%s/cohortd", self) >= len)
		return false;
	return access(out, X_OK) == 0;
}

/* Start argv[0] with stdout and stderr into log; it dies with us. */
static int spawn(char *const argv[], const char *log, pid_t *pid)
{
	pid_t parent = getpid();
	pid_t p = fork();
	if (p < 0)
		return fail("fork: %s", strerror(errno));
	if (p == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0 || nul < 0)
			_exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(125);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	*pid = p;
	return 0;
}

static void log_tail(const net_srv *s)
{
	FILE *f = fopen(s->log, "r");
	char buf[4096];
	if (!f)
		return;
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0,
	      SEEK_SET);
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = 0;
	fclose(f);
	fprintf(stderr, "--- end of %s ---\n%s\n---\n", s->log, buf);
}

/* Still running? Reaps it when not. */
static bool alive(net_srv *s)
{
	int st;
	if (s->pid <= 0)
		return false;
	if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
		fprintf(stderr, "cohort-bench net: %s exited (status %d)\n",
			s->name, WIFEXITED(st) ? WEXITSTATUS(st) :
			128 + WTERMSIG(st));
		log_tail(s);
		s->pid = 0;
		return false;
	}
	return true;
}

/* SIGTERM, then SIGKILL after 10 s; the directory goes. Returns 0 when it
 * exited with status 0 from SIGTERM. */
static int srv_stop(net_srv *s)
{
	int rc = 0;
	if (s->pid > 0) {
		int st = 0;
		kill(s->pid, SIGTERM);
		double deadline = bench_now() + 10;
		pid_t w;
		while ((w = waitpid(s->pid, &st, WNOHANG)) == 0 &&
		       bench_now() < deadline)
			usleep(5000);
		if (w == 0) {
			rc = fail("%s did not stop within 10 s of SIGTERM: "
				  "killed", s->name);
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
		} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			rc = fail("%s ended with status %d after SIGTERM",
				  s->name, WIFEXITED(st) ? WEXITSTATUS(st) :
				  128 + WTERMSIG(st));
			log_tail(s);
		}
		s->pid = 0;
	}
	rm_tree(s->dir);
	s->dir[0] = 0;
	return rc;
}

static int make_dir(net_srv *s, const char *name)
{
	memset(s, 0, sizeof *s);
	s->name = name;
	snprintf(s->dir, sizeof s->dir, "/tmp/cohort-bench-net-XXXXXX");
	if (!mkdtemp(s->dir)) {
		s->dir[0] = 0;
		return fail("mkdtemp: %s", strerror(errno));
	}
	snprintf(s->log, sizeof s->log, "%s/%s.log", s->dir, name);
	return 0;
}

/* A free loopback port (the kernel's choice; closed again at once). */
static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
		close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

static int tcp_connect(int port, int *out)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	*out = fd;
	return 0;
}

/* cohortd [--memory | --dir D --fsync always] on an ephemeral port. */
static int cohortd_start(const char *bin, const char *token, bool durable,
			 int threads, net_srv *s)
{
	char portf[96], tokf[96], data[96], thr[16], line[64];
	if (make_dir(s, "cohortd") != 0)
		return 1;
	snprintf(portf, sizeof portf, "%s/port", s->dir);
	snprintf(tokf, sizeof tokf, "%s/tokens", s->dir);
	snprintf(data, sizeof data, "%s/data", s->dir);
	snprintf(thr, sizeof thr, "%d", threads);
	int fd = open(tokf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail("%s: %s", tokf, strerror(errno));
	int n = snprintf(line, sizeof line, "admin %s\n", token);
	if (write(fd, line, (size_t)n) != n) {
		close(fd);
		return fail("%s: %s", tokf, strerror(errno));
	}
	close(fd);

	char *argv[16];
	int a = 0;
	argv[a++] = (char *)bin;
	argv[a++] = (char *)"--listen";
	argv[a++] = (char *)"127.0.0.1:0";
	argv[a++] = (char *)"--port-file";
	argv[a++] = portf;
	argv[a++] = (char *)"--token-file";
	argv[a++] = tokf;
	argv[a++] = (char *)"--threads";
	argv[a++] = thr;
	if (durable) {
		argv[a++] = (char *)"--dir";
		argv[a++] = data;
		argv[a++] = (char *)"--fsync";
		argv[a++] = (char *)"always";
	} else {
		argv[a++] = (char *)"--memory";
	}
	argv[a] = NULL;
	if (spawn(argv, s->log, &s->pid) != 0)
		return 1;

	double deadline = bench_now() + 30;
	while (bench_now() < deadline) {
		FILE *f = fopen(portf, "r");
		int port = 0;
		char nl = 0;
		if (f) {
			if (fscanf(f, "%d%c", &port, &nl) != 2 || nl != '\n')
				port = 0;
			fclose(f);
		}
		if (port > 0 && port < 65536) {
			s->port = port;
			return 0;
		}
		if (!alive(s))
			return fail("cohortd did not start (log above)");
		usleep(10000);
	}
	log_tail(s);
	return fail("cohortd wrote no port file within 30 s");
}

static int redis_start(const char *bin, bool durable, net_srv *s)
{
	char port[16];
	if (make_dir(s, "redis") != 0)
		return 1;
	s->port = free_port();
	if (s->port <= 0)
		return fail("no free loopback port");
	snprintf(port, sizeof port, "%d", s->port);
	char *argv[] = {
		(char *)bin, (char *)"--port", port,
		(char *)"--bind", (char *)"127.0.0.1",
		(char *)"--dir", s->dir,
		(char *)"--save", (char *)"",
		(char *)"--appendonly", (char *)(durable ? "yes" : "no"),
		(char *)"--appendfsync", (char *)(durable ? "always" : "everysec"),
		(char *)"--daemonize", (char *)"no",
		NULL
	};
	if (spawn(argv, s->log, &s->pid) != 0)
		return 1;

	/* ready when it answers PING */
	double deadline = bench_now() + 30;
	while (bench_now() < deadline) {
		int fd;
		if (!alive(s))
			return fail("redis-server did not start (log above)");
		if (tcp_connect(s->port, &fd) == 0) {
			char buf[16];
			ssize_t n = -1;
			struct pollfd pfd = { fd, POLLIN, 0 };
			if (send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6 &&
			    poll(&pfd, 1, 5000) == 1)
				n = read(fd, buf, sizeof buf);
			close(fd);
			if (n >= 7 && memcmp(buf, "+PONG\r\n", 7) == 0)
				return 0;
		}
		usleep(10000);
	}
	log_tail(s);
	return fail("redis-server did not answer PING within 30 s");
}

/* utime + stime of a process, in seconds. */
static double proc_cpu(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return NAN;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* fields after the command name (which may hold spaces) */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
			 "%llu %llu", &ut, &st) != 2)
		return NAN;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* This process's cpu time (the generator's threads; main sleeps). */
static double self_cpu(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double proc_rss_mb(pid_t pid)
{
	char path[64];
	unsigned long long size, res;
	snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return NAN;
	int n = fscanf(f, "%llu %llu", &size, &res);
	fclose(f);
	if (n != 2)
		return NAN;
	return (double)res * (double)sysconf(_SC_PAGESIZE) / (1 << 20);
}

/* ------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------ */
static net_conn *conn_new(int proto, int fd, uint64_t seed)
{
	net_conn *c = bench_alloc(sizeof *c);
	c->fd = fd;
	c->proto = proto;
	c->in_cap = 64 << 10;
	c->in = malloc(c->in_cap);
	if (!c->in) {
		fprintf(stderr, "cohort-bench net: out of memory\n");
		exit(1);
	}
	c->next_id = c->expect_id = 1;
	bench_rng_seed(&c->rng, seed);
	return c;
}

static void conn_free(net_conn *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	proto_wbuf_free(&c->out);
	free(c->in);
	free(c);
}

/* Write what is queued; 1 when some is left (EAGAIN), 0 when all went,
 * -1 on an error. */
static int conn_flush(net_conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.buf + c->out_off,
				 c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n > 0) {
			c->out_off += (size_t)n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return 1;
		} else {
			return -1;
		}
	}
	c->out.len = 0;
	c->out_off = 0;
	return 0;
}

/* Make room for at least `more` bytes of input. */
static int conn_room(net_conn *c, size_t more)
{
	if (c->in_cap - c->in_len >= more)
		return 0;
	size_t cap = c->in_cap;
	while (cap - c->in_len < more)
		cap *= 2;
	if (cap > (256u << 20))
		return -1;
	uint8_t *p = realloc(c->in, cap);
	if (!p)
		return -1;
	c->in = p;
	c->in_cap = cap;
	return 0;
}

/* ------------------------------------------------------------------------
 * RESP
 * ------------------------------------------------------------------------ */
static void resp_array(proto_wbuf *w, size_t n)
{
	char buf[24];
	buf[0] = '*';
	size_t len = 1 + put_u64(buf + 1, n);
	buf[len++] = '\r';
	buf[len++] = '\n';
	proto_w_bytes(w, buf, len);
}

static void resp_bulk(proto_wbuf *w, const void *p, size_t n)
{
	char buf[24];
	buf[0] = '$';
	size_t len = 1 + put_u64(buf + 1, n);
	buf[len++] = '\r';
	buf[len++] = '\n';
	proto_w_bytes(w, buf, len);
	proto_w_bytes(w, p, n);
	proto_w_bytes(w, "\r\n", 2);
}

static void resp_str(proto_wbuf *w, const char *s)
{
	resp_bulk(w, s, strlen(s));
}

/* A line "<type>...\r\n" at p: the length of its content (excluding the
 * type byte and CRLF) in *len; bytes up to after the LF, 0 when the LF
 * has not come yet, -1 when the line does not end in CRLF. */
static long resp_line(const uint8_t *p, size_t avail, size_t *len)
{
	const uint8_t *lf = memchr(p, '\n', avail);
	if (!lf)
		return avail > 64 << 10 ? -1 : 0;
	if (lf == p || lf[-1] != '\r')
		return -1;
	*len = (size_t)(lf - p) - 2;
	return (long)(lf - p) + 1;
}

static int resp_int(const uint8_t *p, size_t len, int64_t *out)
{
	int64_t v = 0;
	bool neg = false;
	size_t i = 0;
	if (len > 0 && p[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len || len - i > 18)
		return -1;
	for (; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	*out = neg ? -v : v;
	return 0;
}

/* Parse one reply at p: bytes consumed, 0 for more, -1 when malformed. */
static long resp_parse(const uint8_t *p, size_t avail, resp_reply *r,
		       int depth)
{
	size_t len;
	if (avail == 0)
		return 0;
	long used = resp_line(p, avail, &len);
	if (used <= 0)
		return used;
	r->type = (char)p[0];
	r->str = p + 1;
	r->len = len;
	r->nils = 0;
	switch (p[0]) {
	case '+':
	case '-':
		return used;
	case ':':
		return resp_int(p + 1, len, &r->n) == 0 ? used : -1;
	case '$':
		if (resp_int(p + 1, len, &r->n) != 0 || r->n < -1)
			return -1;
		if (r->n < 0)
			return used;
		if (avail - (size_t)used < (size_t)r->n + 2)
			return 0;
		r->str = p + used;
		r->len = (size_t)r->n;
		if (p[used + r->n] != '\r' || p[used + r->n + 1] != '\n')
			return -1;
		return used + (long)r->n + 2;
	case '*': {
		if (resp_int(p + 1, len, &r->n) != 0 || r->n < -1 || depth > 4)
			return -1;
		size_t off = (size_t)used;
		for (int64_t i = 0; i < r->n; i++) {
			resp_reply e;
			long u = resp_parse(p + off, avail - off, &e, depth + 1);
			if (u <= 0)
				return u;
			if ((e.type == '$' || e.type == '*') && e.n < 0)
				r->nils++;
			off += (size_t)u;
		}
		return (long)off;
	}
	default:
		return -1;
	}
}

/* ------------------------------------------------------------------------
 * Encoding one operation
 * ------------------------------------------------------------------------ */
static const int all_cols[NFEAT] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
	16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
};

static void req_init(proto_req *r, uint8_t op, uint32_t id, const char *table)
{
	memset(&r->hdr, 0, sizeof r->hdr);
	r->hdr.opcode = op;
	r->hdr.id = id;
	snprintf(r->table, sizeof r->table, "%s", table);
	r->name[0] = 0;
}

/* The field names f0..f31 as RESP bulk strings, once. */
static char hm_fields[NFEAT * 12];
static size_t hm_fields_len;

static void hm_fields_init(void)
{
	size_t o = 0;
	for (int j = 0; j < NFEAT; j++)
		o += (size_t)sprintf(hm_fields + o, "$%d\r\nf%d\r\n",
				     j < 10 ? 2 : 3, j);
	hm_fields_len = o;
}

static void r_hmget(proto_wbuf *w, uint64_t cust)
{
	char key[24];
	size_t klen = cust_key(cust, key);
	resp_array(w, 2 + NFEAT);
	resp_bulk(w, "HMGET", 5);
	resp_bulk(w, key, klen);
	proto_w_bytes(w, hm_fields, hm_fields_len);
}

static void blob_of(uint64_t cust, uint8_t *blob)
{
	for (int j = 0; j < NFEAT; j++) {
		double v = feat(cust, j);
		uint64_t u;
		memcpy(&u, &v, 8);
		for (int b = 0; b < 8; b++)
			blob[j * 8 + b] = (uint8_t)(u >> (8 * b));
	}
}

/* Append one operation for conn c; returns the replies it expects, or a
 * negative code. */
static int encode(const net_work *w, net_conn *c, uint64_t item)
{
	char key[24];
	size_t klen;
	proto_req r;

	switch (w->kind) {
	case W_C_PUT:
	case W_C_PUTVEC: {
		bool vec = w->kind == W_C_PUTVEC;
		uint64_t lo = item * PUT_BATCH, hi = lo + PUT_BATCH;
		uint64_t total = vec ? w->nvecs : w->ncust;
		int nf = vec ? 1 : NFEAT;
		hi = hi > total ? total : hi;
		proto_put_row *rows = malloc(PUT_BATCH * sizeof *rows);
		cohort_field *fields = malloc(PUT_BATCH * NFEAT * sizeof *fields);
		char (*keys)[24] = malloc(PUT_BATCH * sizeof *keys);
		if (!rows || !fields || !keys) {
			free(rows);
			free(fields);
			free(keys);
			return COHORT_ENOMEM;
		}
		for (uint64_t i = lo; i < hi; i++) {
			proto_put_row *row = &rows[i - lo];
			cohort_field *f = fields + (i - lo) * NFEAT;
			row->key.ptr = keys[i - lo];
			row->key.len = (uint8_t)cust_key(i, keys[i - lo]);
			row->time = COHORT_NOW;
			row->nfields = (uint16_t)nf;
			row->fields = f;
			for (int j = 0; j < nf; j++) {
				f[j].column = j;
				f[j].value = vec ?
					cohort_vec(w->vecs + i * KNN_DIM, KNN_DIM) :
					cohort_f64(feat(i, j));
			}
		}
		req_init(&r, PROTO_OP_PUT, c->next_id++, vec ? "vecs" : "feat");
		r.u.put.nrows = (uint32_t)(hi - lo);
		r.u.put.rows = rows;
		proto_req_encode(&c->out, &r);
		free(rows);
		free(fields);
		free(keys);
		return 1;
	}
	case W_C_GET: {
		proto_key k;
		klen = cust_key(bench_rng_below(&c->rng, w->ncust), key);
		k.ptr = key;
		k.len = (uint8_t)klen;
		req_init(&r, PROTO_OP_GET, c->next_id++, "feat");
		r.u.get.at = COHORT_NOW;
		r.u.get.ncols = NFEAT;
		r.u.get.cols = (int *)all_cols;
		r.u.get.nkeys = 1;
		r.u.get.keys = &k;
		proto_req_encode(&c->out, &r);
		return 1;
	}
	case W_C_GET_MANY: {
		proto_key ks[MANY];
		char kb[MANY][24];
		for (int i = 0; i < MANY; i++) {
			ks[i].ptr = kb[i];
			ks[i].len = (uint8_t)cust_key(
				bench_rng_below(&c->rng, w->ncust), kb[i]);
		}
		req_init(&r, PROTO_OP_GET_MANY, c->next_id++, "feat");
		r.u.get.at = COHORT_NOW;
		r.u.get.ncols = NFEAT;
		r.u.get.cols = (int *)all_cols;
		r.u.get.nkeys = MANY;
		r.u.get.keys = ks;
		proto_req_encode(&c->out, &r);
		return 1;
	}
	case W_C_EVENT: {
		proto_event_row row;
		cohort_update up;
		klen = cust_key(bench_rng_below(&c->rng, w->ncust), key);
		row.key.ptr = key;
		row.key.len = (uint8_t)klen;
		row.time = COHORT_NOW;
		row.nupdates = 1;
		row.updates = &up;
		up.column = 0;
		up.op = COHORT_OP_ADD;
		up.value = cohort_f64(1.0);
		req_init(&r, PROTO_OP_EVENT, c->next_id++, "ev");
		r.u.event.nrows = 1;
		r.u.event.rows = &row;
		proto_req_encode(&c->out, &r);
		return 1;
	}
	case W_C_KNN: {
		uint64_t q = bench_rng_below(&c->rng, w->nvecs);
		req_init(&r, PROTO_OP_KNN, c->next_id++, "vecs");
		snprintf(r.name, sizeof r.name, "ix");
		memset(&r.u.knn, 0, sizeof r.u.knn);
		r.u.knn.k = w->k;
		r.u.knn.ef = w->ef;
		r.u.knn.at = COHORT_NOW;
		r.u.knn.dim = KNN_DIM;
		r.u.knn.vec = (float *)(w->vecs + q * KNN_DIM);
		proto_req_encode(&c->out, &r);
		return 1;
	}
	case W_R_HSET: {
		uint64_t lo = item * RESP_BATCH, hi = lo + RESP_BATCH;
		hi = hi > w->ncust ? w->ncust : hi;
		for (uint64_t i = lo; i < hi; i++) {
			char num[32];
			klen = cust_key(i, key);
			resp_array(&c->out, 2 + 2 * NFEAT);
			resp_bulk(&c->out, "HSET", 4);
			resp_bulk(&c->out, key, klen);
			for (int j = 0; j < NFEAT; j++) {
				int n = snprintf(num, sizeof num, "f%d", j);
				resp_bulk(&c->out, num, (size_t)n);
				n = snprintf(num, sizeof num, "%.17g", feat(i, j));
				resp_bulk(&c->out, num, (size_t)n);
			}
		}
		return (int)(hi - lo);
	}
	case W_R_SET: {
		uint64_t lo = item * RESP_BATCH, hi = lo + RESP_BATCH;
		uint8_t blob[BLOB_LEN];
		hi = hi > w->ncust ? w->ncust : hi;
		for (uint64_t i = lo; i < hi; i++) {
			klen = cust_key(i, key);
			memcpy(key + klen, ":blob", 5);
			blob_of(i, blob);
			resp_array(&c->out, 3);
			resp_bulk(&c->out, "SET", 3);
			resp_bulk(&c->out, key, klen + 5);
			resp_bulk(&c->out, blob, BLOB_LEN);
		}
		return (int)(hi - lo);
	}
	case W_R_HMGET:
		r_hmget(&c->out, bench_rng_below(&c->rng, w->ncust));
		return 1;
	case W_R_GET:
		klen = cust_key(bench_rng_below(&c->rng, w->ncust), key);
		memcpy(key + klen, ":blob", 5);
		resp_array(&c->out, 2);
		resp_bulk(&c->out, "GET", 3);
		resp_bulk(&c->out, key, klen + 5);
		return 1;
	case W_R_HMGET_MANY:
		for (int i = 0; i < MANY; i++)
			r_hmget(&c->out, bench_rng_below(&c->rng, w->ncust));
		return MANY;
	case W_R_HINCR:
		klen = cust_key(bench_rng_below(&c->rng, w->ncust), key);
		resp_array(&c->out, 4);
		resp_bulk(&c->out, "HINCRBYFLOAT", 12);
		resp_bulk(&c->out, key, klen);
		resp_bulk(&c->out, "n", 1);
		resp_bulk(&c->out, "1", 1);
		return 1;
	}
	return -1;
}

/* ------------------------------------------------------------------------
 * Checking one reply
 * ------------------------------------------------------------------------ */
static uint8_t work_opcode(enum net_kind k)
{
	switch (k) {
	case W_C_PUT:
	case W_C_PUTVEC:
		return PROTO_OP_PUT;
	case W_C_GET:
		return PROTO_OP_GET;
	case W_C_GET_MANY:
		return PROTO_OP_GET_MANY;
	case W_C_EVENT:
		return PROTO_OP_EVENT;
	case W_C_KNN:
		return PROTO_OP_KNN;
	default:
		return 0;
	}
}

/* A batch write's result: every row 0. */
static int check_batch(proto_rbuf *r, uint32_t want, char *msg, size_t len)
{
	uint32_t n = proto_r_u32(r);
	if (r->err || n != want) {
		snprintf(msg, len, "batch result of %u rows, wanted %u", n, want);
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		int32_t st = proto_r_i32(r);
		if (r->err || st != 0) {
			uint32_t nerr = proto_r_u32(r);
			size_t ml = 0;
			const char *m = "";
			if (nerr > 0) {
				(void)proto_r_u32(r);
				m = proto_r_str16(r, &ml);
			}
			snprintf(msg, len, "row %u: %s (%d): %.*s", i,
				 cohort_strerror(st), st, (int)ml, m ? m : "");
			return -1;
		}
	}
	return 0;
}

/* One cohort response frame of conn c: 0 or -1 with msg. */
static int check_cohort(const net_work *w, net_conn *c, const proto_hdr *h,
			const uint8_t *body, char *msg, size_t len)
{
	proto_rbuf r = { .p = body, .end = body + h->body_len };
	const char *m;
	size_t ml;

	if (!(h->flags & PROTO_F_RESPONSE) || (h->flags & PROTO_F_PUSH) ||
	    h->opcode != work_opcode(w->kind) || h->id != c->expect_id) {
		snprintf(msg, len, "unexpected frame: opcode 0x%02x flags 0x%x "
			 "id %u (wanted opcode 0x%02x id %u)", h->opcode,
			 h->flags, h->id, work_opcode(w->kind), c->expect_id);
		return -1;
	}
	c->expect_id++;
	int st = proto_resp_status(&r, &m, &ml);
	if (st < 0) {
		snprintf(msg, len, "%s: %s (%d): %.*s",
			 proto_op_name(h->opcode), cohort_strerror(st), st,
			 (int)ml, m ? m : "");
		return -1;
	}
	switch (w->kind) {
	case W_C_PUT:
	case W_C_PUTVEC: {
		/* a batch of up to PUT_BATCH rows, every one stored */
		uint32_t nrows = proto_r_u32(&r);
		r.p -= 4;
		if (nrows == 0 || nrows > PUT_BATCH) {
			snprintf(msg, len, "put: a result of %u rows", nrows);
			return -1;
		}
		return check_batch(&r, nrows, msg, len);
	}
	case W_C_EVENT:
		return check_batch(&r, 1, msg, len);
	case W_C_GET: {
		uint8_t rs = proto_r_u8(&r);
		(void)proto_r_i64(&r);
		uint16_t nc = proto_r_u16(&r);
		if (r.err || rs != COHORT_ROW_PRESENT || nc != NFEAT) {
			snprintf(msg, len, "get: row status %u, %u columns", rs, nc);
			return -1;
		}
		return 0;
	}
	case W_C_GET_MANY: {
		uint32_t nk = proto_r_u32(&r);
		uint16_t nc = proto_r_u16(&r);
		const uint8_t *rs = proto_r_bytes(&r, MANY);
		if (r.err || nk != MANY || nc != NFEAT) {
			snprintf(msg, len, "get_many: %u keys, %u columns", nk, nc);
			return -1;
		}
		for (int i = 0; i < MANY; i++)
			if (rs[i] != COHORT_ROW_PRESENT) {
				snprintf(msg, len, "get_many: key %d status %u",
					 i, rs[i]);
				return -1;
			}
		return 0;
	}
	case W_C_KNN: {
		uint32_t n = proto_r_u32(&r);
		if (r.err || n != w->k) {
			snprintf(msg, len, "knn: %u neighbours, wanted %u", n, w->k);
			return -1;
		}
		return 0;
	}
	default:
		snprintf(msg, len, "cohort frame on a Redis workload");
		return -1;
	}
}

static int check_resp(const net_work *w, const resp_reply *rp, char *msg,
		      size_t len)
{
	bool ok;
	if (rp->type == '-') {
		snprintf(msg, len, "redis: %.*s", (int)rp->len, rp->str);
		return -1;
	}
	switch (w->kind) {
	case W_R_HSET:
		ok = rp->type == ':' && rp->n >= 0;
		break;
	case W_R_SET:
		ok = rp->type == '+' && rp->len == 2 &&
		     memcmp(rp->str, "OK", 2) == 0;
		break;
	case W_R_HMGET:
	case W_R_HMGET_MANY:
		ok = rp->type == '*' && rp->n == NFEAT && rp->nils == 0;
		break;
	case W_R_GET:
		ok = rp->type == '$' && rp->n == BLOB_LEN;
		break;
	case W_R_HINCR:
		ok = rp->type == '$' && rp->n > 0;
		break;
	default:
		ok = false;
	}
	if (!ok) {
		snprintf(msg, len, "redis: unexpected reply '%c' n=%lld nils=%u",
			 rp->type, (long long)rp->n, rp->nils);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * The generator
 * ------------------------------------------------------------------------ */
typedef struct net_run {
	const net_work *w;
	int depth;
	double t_w, t_e;         /* the timed window (count mode: t_e = inf) */
	atomic_uint_fast64_t next;   /* count mode: next item */
	atomic_int failed;
	pthread_barrier_t barrier;
} net_run;

typedef struct gen_thread {
	net_run *run;
	net_conn **conns;
	int nconns;
	pthread_t tid;
	uint64_t done;           /* operations completed in the window */
	uint64_t *hist;
	bool stopped;            /* issues no more */
	double last_progress;
	int err;
	char msg[512];
} gen_thread;

static int gen_fail(gen_thread *g, const char *what)
{
	if (!g->err) {
		g->err = -1;
		snprintf(g->msg, sizeof g->msg, "%s", what);
	}
	atomic_store(&g->run->failed, 1);
	return -1;
}

/* Queue one operation on c when the run still wants one. */
static int issue(gen_thread *g, net_conn *c, double now)
{
	net_run *run = g->run;
	uint64_t item = 0;

	if (g->stopped || atomic_load_explicit(&run->failed,
					       memory_order_relaxed)) {
		g->stopped = true;
		return 0;
	}
	if (run->w->items) {
		item = atomic_fetch_add(&run->next, 1);
		if (item >= run->w->items) {
			g->stopped = true;
			return 0;
		}
	} else if (now >= run->t_e) {
		g->stopped = true;
		return 0;
	}
	int nrep = encode(run->w, c, item);
	if (nrep <= 0 || c->out.err)
		return gen_fail(g, "could not encode a request");
	net_op *op = &c->ring[(c->head + c->n) % MAX_DEPTH];
	op->t = now;
	op->left = (uint32_t)nrep;
	c->n++;
	return 1;
}

static void complete(gen_thread *g, net_conn *c, double now)
{
	net_op *op = &c->ring[c->head];
	if (now >= g->run->t_w && now < g->run->t_e) {
		double ns = (now - op->t) * 1e9;
		g->done++;
		g->hist[hist_index(ns > 0 ? (uint64_t)ns : 0)]++;
	}
	c->head = (c->head + 1) % MAX_DEPTH;
	c->n--;
}

/* Parse the complete replies in c->in; complete operations, issue new
 * ones. */
static int parse_input(gen_thread *g, net_conn *c, double now)
{
	size_t off = 0;
	char msg[400];
	int rc = 0;

	while (off < c->in_len) {
		const uint8_t *p = c->in + off;
		size_t avail = c->in_len - off, used;
		if (c->proto == P_COHORT) {
			proto_hdr h;
			int n = proto_hdr_decode(p, avail, UINT32_MAX, &h);
			if (n == PROTO_MORE)
				break;
			if (n < 0) {
				snprintf(msg, sizeof msg, "bad frame header: %s",
					 cohort_strerror(n));
				rc = gen_fail(g, msg);
				break;
			}
			if (avail < PROTO_HDR_LEN + (size_t)h.body_len) {
				if (conn_room(c, PROTO_HDR_LEN + h.body_len) != 0)
					rc = gen_fail(g, "response too large");
				break;
			}
			if (check_cohort(g->run->w, c, &h, p + PROTO_HDR_LEN,
					 msg, sizeof msg) != 0) {
				rc = gen_fail(g, msg);
				break;
			}
			used = PROTO_HDR_LEN + h.body_len;
		} else {
			resp_reply rp;
			long n = resp_parse(p, avail, &rp, 0);
			if (n == 0)
				break;
			if (n < 0) {
				rc = gen_fail(g, "malformed RESP reply");
				break;
			}
			if (check_resp(g->run->w, &rp, msg, sizeof msg) != 0) {
				rc = gen_fail(g, msg);
				break;
			}
			used = (size_t)n;
		}
		off += used;
		if (c->n == 0) {
			rc = gen_fail(g, "a reply to no request");
			break;
		}
		g->last_progress = now;
		if (--c->ring[c->head].left == 0) {
			complete(g, c, now);
			if (issue(g, c, now) < 0) {
				rc = -1;
				break;
			}
		}
	}
	if (off > 0) {
		memmove(c->in, c->in + off, c->in_len - off);
		c->in_len -= off;
	}
	return rc;
}

static int arm(int ep, net_conn *c, bool out)
{
	struct epoll_event ev;
	ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	c->want_out = out;
	return epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static int flush_arm(gen_thread *g, int ep, net_conn *c)
{
	int f = conn_flush(c);
	if (f < 0)
		return gen_fail(g, "send failed: the server closed the "
				"connection?");
	if ((f == 1) != c->want_out && arm(ep, c, f == 1) != 0)
		return gen_fail(g, "epoll_ctl failed");
	return 0;
}

static int conn_readable(gen_thread *g, net_conn *c)
{
	for (;;) {
		if (conn_room(c, 16 << 10) != 0)
			return gen_fail(g, "out of memory for replies");
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
				 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			if (parse_input(g, c, bench_now()) != 0)
				return -1;
			if ((size_t)n < 16 << 10)
				return 0;
		} else if (n == 0) {
			return gen_fail(g, "the server closed the connection");
		} else if (errno == EINTR) {
			continue;
		} else if (errno == EAGAIN || errno == EWOULDBLOCK) {
			return 0;
		} else {
			return gen_fail(g, "recv failed");
		}
	}
}

static void *gen_main(void *p)
{
	gen_thread *g = p;
	net_run *run = g->run;
	struct epoll_event evs[MAX_CONNS];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int inflight;

	if (ep < 0)
		gen_fail(g, "epoll_create1 failed");
	for (int i = 0; ep >= 0 && i < g->nconns; i++) {
		struct epoll_event ev;
		ev.events = EPOLLIN;
		ev.data.ptr = g->conns[i];
		g->conns[i]->want_out = false;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, g->conns[i]->fd, &ev) != 0)
			gen_fail(g, "epoll_ctl failed");
	}
	pthread_barrier_wait(&run->barrier);
	if (g->err)
		goto out;

	double now = bench_now();
	g->last_progress = now;
	for (int i = 0; i < g->nconns; i++) {
		for (int d = 0; d < run->depth; d++)
			if (issue(g, g->conns[i], now) <= 0)
				break;
		if (flush_arm(g, ep, g->conns[i]) != 0)
			goto out;
	}
	for (;;) {
		inflight = 0;
		for (int i = 0; i < g->nconns; i++)
			inflight += (int)g->conns[i]->n;
		if (g->err || (inflight == 0 &&
			       (g->stopped || atomic_load(&run->failed))))
			break;
		if (inflight == 0) {
			/* nothing out (the run wants no more right now) */
			g->stopped = true;
			continue;
		}
		int n = epoll_wait(ep, evs, MAX_CONNS, 50);
		now = bench_now();
		if (n < 0 && errno != EINTR) {
			gen_fail(g, "epoll_wait failed");
			break;
		}
		for (int i = 0; i < n; i++) {
			net_conn *c = evs[i].data.ptr;
			if ((evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
			    conn_readable(g, c) != 0)
				goto out;
			if (flush_arm(g, ep, c) != 0)
				goto out;
		}
		if (now - g->last_progress > STALL_S) {
			gen_fail(g, "no reply for 120 s");
			break;
		}
	}
out:
	if (ep >= 0)
		close(ep);
	return NULL;
}

typedef struct net_res {
	double rate;             /* operations/s in the window */
	uint64_t ops;
	double p50, p99, p999;   /* microseconds */
	double srv_cores;        /* server cpu seconds / window seconds */
	double gen_cores;        /* the generator's, the same way */
	double seconds;
} net_res;

/*
 * Drive w over conns[0..nconns) at `depth` from G threads. Timed
 * (w->items == 0): a warm-up, then `secs` measured; count mode: until the
 * w->items items are done, all of it measured. srv: the server's pid for
 * its cpu time. Connections are left idle (all replies read).
 */
static int gen_run(const net_sizes *sz, const net_work *w, net_conn **conns,
		   int nconns, int depth, double warm, double secs, pid_t srv,
		   net_res *out)
{
	int ng = sz->gen_threads < nconns ? sz->gen_threads : nconns;
	gen_thread *gt = bench_alloc(sizeof *gt * (size_t)ng);
	net_run run;
	int rc = 0;

	memset(out, 0, sizeof *out);
	/* what is left in the input is the last synchronous call's reply,
	 * already read */
	for (int i = 0; i < nconns; i++)
		conns[i]->in_len = 0;
	run.w = w;
	run.depth = depth;
	atomic_init(&run.next, 0);
	atomic_init(&run.failed, 0);
	pthread_barrier_init(&run.barrier, NULL, (unsigned)ng + 1);
	for (int i = 0; i < ng; i++) {
		gt[i].run = &run;
		gt[i].conns = malloc(sizeof(net_conn *) * (size_t)nconns);
		gt[i].hist = calloc(HBUCKETS, sizeof(uint64_t));
		if (!gt[i].conns || !gt[i].hist) {
			fprintf(stderr, "cohort-bench net: out of memory\n");
			exit(1);
		}
		for (int j = i; j < nconns; j += ng)
			gt[i].conns[gt[i].nconns++] = conns[j];
	}
	double t0 = bench_now() + 0.002;
	if (w->items) {
		run.t_w = t0;
		run.t_e = INFINITY;
	} else {
		run.t_w = t0 + warm;
		run.t_e = run.t_w + secs;
	}
	for (int i = 0; i < ng; i++)
		if (pthread_create(&gt[i].tid, NULL, gen_main, &gt[i]) != 0) {
			fprintf(stderr, "cohort-bench net: pthread_create failed\n");
			exit(1);
		}
	sleep_until(t0);
	pthread_barrier_wait(&run.barrier);
	double cpu0, cpu1 = NAN, gcpu0, gcpu1 = NAN, tw0, tw1 = 0;
	if (w->items) {
		cpu0 = proc_cpu(srv);
		gcpu0 = self_cpu();
		tw0 = bench_now();
	} else {
		sleep_until(run.t_w);
		cpu0 = proc_cpu(srv);
		gcpu0 = self_cpu();
		tw0 = bench_now();
		sleep_until(run.t_e);
		cpu1 = proc_cpu(srv);
		gcpu1 = self_cpu();
		tw1 = bench_now();
	}
	for (int i = 0; i < ng; i++)
		pthread_join(gt[i].tid, NULL);
	if (w->items) {
		cpu1 = proc_cpu(srv);
		gcpu1 = self_cpu();
		tw1 = bench_now();
	}
	pthread_barrier_destroy(&run.barrier);

	uint64_t *hist = calloc(HBUCKETS, sizeof(uint64_t));
	if (!hist) {
		fprintf(stderr, "cohort-bench net: out of memory\n");
		exit(1);
	}
	for (int i = 0; i < ng; i++) {
		if (gt[i].err && !rc)
			rc = fail("%s", gt[i].msg);
		out->ops += gt[i].done;
		for (unsigned b = 0; b < HBUCKETS; b++)
			hist[b] += gt[i].hist[b];
		free(gt[i].conns);
		free(gt[i].hist);
	}
	out->seconds = w->items ? tw1 - tw0 : secs;
	out->rate = out->seconds > 0 ? (double)out->ops / out->seconds : 0;
	out->p50 = hist_quantile(hist, out->ops, 0.50);
	out->p99 = hist_quantile(hist, out->ops, 0.99);
	out->p999 = hist_quantile(hist, out->ops, 0.999);
	out->srv_cores = (cpu1 - cpu0) / (tw1 - tw0);
	out->gen_cores = (gcpu1 - gcpu0) / (tw1 - tw0);
	free(hist);
	free(gt);
	if (!rc && w->items && out->ops != w->items)
		rc = fail("%llu of %llu items done",
			  (unsigned long long)out->ops,
			  (unsigned long long)w->items);
	return rc;
}

/* ------------------------------------------------------------------------
 * Synchronous calls (setup, checks, recall)
 * ------------------------------------------------------------------------ */
static int wait_fd(int fd, short ev)
{
	struct pollfd p = { fd, ev, 0 };
	int n = poll(&p, 1, SYNC_TIMEOUT_MS);
	if (n == 1)
		return 0;
	return fail(n == 0 ? "no reply within %d s" : "poll failed (%d s)",
		    SYNC_TIMEOUT_MS / 1000);
}

static int sync_send(net_conn *c)
{
	int f;
	while ((f = conn_flush(c)) == 1)
		if (wait_fd(c->fd, POLLOUT) != 0)
			return 1;
	return f < 0 ? fail("send failed: %s", strerror(errno)) : 0;
}

/* Read more input; 1 on error. */
static int sync_recv(net_conn *c)
{
	for (;;) {
		if (conn_room(c, 16 << 10) != 0)
			return fail("reply too large");
		ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len,
				 0);
		if (n > 0) {
			c->in_len += (size_t)n;
			return 0;
		}
		if (n == 0)
			return fail("the server closed the connection");
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return fail("recv: %s", strerror(errno));
		if (wait_fd(c->fd, POLLIN) != 0)
			return 1;
	}
}

/* Send r, read its response: the body (in c->in, valid until the next
 * call) and its status, in *body, *len, *status. A transport or framing
 * failure returns 1 (reported). */
static int c_call(net_conn *c, proto_req *r, proto_rbuf *body, int *status,
		  char *msg, size_t msg_len)
{
	proto_hdr h;
	const char *m;
	size_t ml;

	c->in_len = 0;
	r->hdr.id = c->next_id++;
	proto_req_encode(&c->out, r);
	if (c->out.err)
		return fail("could not encode %s: %s", proto_op_name(r->hdr.opcode),
			    cohort_strerror(c->out.err));
	if (sync_send(c) != 0)
		return 1;
	for (;;) {
		int n = proto_hdr_decode(c->in, c->in_len, UINT32_MAX, &h);
		if (n < 0)
			return fail("bad response header: %s", cohort_strerror(n));
		if (n > 0 && c->in_len >= PROTO_HDR_LEN + (size_t)h.body_len)
			break;
		if (sync_recv(c) != 0)
			return 1;
	}
	if (h.id != r->hdr.id || h.opcode != r->hdr.opcode ||
	    !(h.flags & PROTO_F_RESPONSE))
		return fail("response id %u opcode 0x%02x to request id %u "
			    "opcode 0x%02x", h.id, h.opcode, r->hdr.id,
			    r->hdr.opcode);
	c->expect_id = c->next_id;
	body->p = c->in + PROTO_HDR_LEN;
	body->end = body->p + h.body_len;
	body->err = 0;
	*status = proto_resp_status(body, &m, &ml);
	if (msg)
		snprintf(msg, msg_len, "%.*s", (int)ml, *status < 0 && m ? m : "");
	return 0;
}

/* A call that must succeed. */
static int c_must(net_conn *c, proto_req *r, proto_rbuf *body)
{
	int st = 0;
	char msg[256];
	if (c_call(c, r, body, &st, msg, sizeof msg) != 0)
		return 1;
	if (st < 0)
		return fail("%s: %s (%d): %s", proto_op_name(r->hdr.opcode),
			    cohort_strerror(st), st, msg);
	return 0;
}

/* One RESP command (argv strings), its reply parsed into *rp (pointing
 * into c->in until the next call). */
static int r_call(net_conn *c, int argc, const char *const *argv,
		  resp_reply *rp)
{
	c->in_len = 0;
	resp_array(&c->out, (size_t)argc);
	for (int i = 0; i < argc; i++)
		resp_str(&c->out, argv[i]);
	if (sync_send(c) != 0)
		return 1;
	for (;;) {
		long n = resp_parse(c->in, c->in_len, rp, 0);
		if (n < 0)
			return fail("malformed RESP reply");
		if (n > 0)
			return 0;
		if (sync_recv(c) != 0)
			return 1;
	}
}

static int cohort_open_conn(int port, const char *token, uint64_t seed,
			    net_conn **out)
{
	int fd, e = tcp_connect(port, &fd);
	proto_req r;
	proto_rbuf b;
	if (e < 0)
		return fail("connect to cohortd on port %d: %s", port,
			    strerror(-e));
	net_conn *c = conn_new(P_COHORT, fd, seed);
	req_init(&r, PROTO_OP_HELLO, 0, "");
	r.u.hello.version = PROTO_VERSION;
	snprintf(r.u.hello.client, sizeof r.u.hello.client, "cohort_bench");
	if (c_must(c, &r, &b) != 0)
		goto bad;
	req_init(&r, PROTO_OP_AUTH, 0, "");
	r.u.auth.token = token;
	r.u.auth.token_len = (uint8_t)strlen(token);
	if (c_must(c, &r, &b) != 0)
		goto bad;
	uint8_t role = proto_r_u8(&b);
	if (b.err || role != PROTO_ROLE_ADMIN) {
		fail("auth: role %u, wanted admin", role);
		goto bad;
	}
	*out = c;
	return 0;
bad:
	conn_free(c);
	return 1;
}

static int redis_open_conn(int port, uint64_t seed, net_conn **out)
{
	int fd, e = tcp_connect(port, &fd);
	if (e < 0)
		return fail("connect to redis on port %d: %s", port, strerror(-e));
	*out = conn_new(P_RESP, fd, seed);
	return 0;
}

/* ------------------------------------------------------------------------
 * One server under test: its process and its connections
 * ------------------------------------------------------------------------ */
typedef struct net_side {
	net_srv srv;
	int proto;
	net_conn *conns[MAX_CONNS];
	int nconns;
} net_side;

static int side_connect(net_side *s, const char *token, int n)
{
	for (int i = s->nconns; i < n; i++) {
		uint64_t seed = SEED ^ ((uint64_t)s->proto << 32) ^ (uint64_t)i;
		int rc = s->proto == P_COHORT ?
			cohort_open_conn(s->srv.port, token, seed, &s->conns[i]) :
			redis_open_conn(s->srv.port, seed, &s->conns[i]);
		if (rc != 0)
			return 1;
		s->nconns = i + 1;
	}
	return 0;
}

static int side_stop(net_side *s)
{
	for (int i = 0; i < s->nconns; i++)
		conn_free(s->conns[i]);
	s->nconns = 0;
	return srv_stop(&s->srv);
}

/* ------------------------------------------------------------------------
 * Setup over the wire
 * ------------------------------------------------------------------------ */
static int c_table(net_conn *c, const char *name, const proto_column *cols,
		   uint16_t ncols)
{
	proto_req r;
	proto_rbuf b;
	req_init(&r, PROTO_OP_TABLE_CREATE, 0, name);
	r.u.table_create.ttl_ms = 0;
	r.u.table_create.ncols = ncols;
	r.u.table_create.cols = (proto_column *)cols;
	return c_must(c, &r, &b);
}

static int c_feat_table(net_conn *c)
{
	proto_column cols[NFEAT];
	memset(cols, 0, sizeof cols);
	for (int j = 0; j < NFEAT; j++) {
		snprintf(cols[j].name, sizeof cols[j].name, "f%d", j);
		cols[j].type = COHORT_F64;
	}
	return c_table(c, "feat", cols, NFEAT);
}

/* Check customer i in all three layouts: values exact. */
static int check_customer(net_conn *cc, net_conn *rc, uint64_t i)
{
	char key[32];
	size_t klen = cust_key(i, key);
	proto_key k = { key, (uint8_t)klen };
	proto_req r;
	proto_rbuf b;

	req_init(&r, PROTO_OP_GET, 0, "feat");
	r.u.get.at = COHORT_NOW;
	r.u.get.ncols = NFEAT;
	r.u.get.cols = (int *)all_cols;
	r.u.get.nkeys = 1;
	r.u.get.keys = &k;
	if (c_must(cc, &r, &b) != 0)
		return 1;
	uint8_t rs = proto_r_u8(&b);
	(void)proto_r_i64(&b);
	uint16_t nc = proto_r_u16(&b);
	if (rs != COHORT_ROW_PRESENT || nc != NFEAT)
		return fail("cohort get %s: status %u, %u columns", key, rs, nc);
	for (int j = 0; j < NFEAT; j++) {
		uint8_t type = proto_r_u8(&b);
		double v = proto_r_f64(&b);
		if (b.err || type != COHORT_F64 || v != feat(i, j))
			return fail("cohort get %s: f%d is %g (type %u), wanted %g",
				    key, j, v, type, feat(i, j));
	}

	key[klen] = 0;
	const char *argv[2 + NFEAT];
	char fields[NFEAT][8];
	resp_reply rp;
	argv[0] = "HMGET";
	argv[1] = key;
	for (int j = 0; j < NFEAT; j++) {
		snprintf(fields[j], sizeof fields[j], "f%d", j);
		argv[2 + j] = fields[j];
	}
	if (r_call(rc, 2 + NFEAT, argv, &rp) != 0)
		return 1;
	if (rp.type != '*' || rp.n != NFEAT || rp.nils)
		return fail("redis HMGET %s: reply '%c' n=%lld", key, rp.type,
			    (long long)rp.n);
	/* the elements, in order */
	const uint8_t *p = rp.str + rp.len + 2;
	for (int j = 0; j < NFEAT; j++) {
		resp_reply e;
		long u = resp_parse(p, (size_t)(rc->in + rc->in_len - p), &e, 1);
		char num[40];
		if (u <= 0 || e.type != '$' || e.len >= sizeof num)
			return fail("redis HMGET %s: bad element %d", key, j);
		memcpy(num, e.str, e.len);
		num[e.len] = 0;
		if (strtod(num, NULL) != feat(i, j))
			return fail("redis HMGET %s: f%d is %s, wanted %g", key,
				    j, num, feat(i, j));
		p += u;
	}

	uint8_t blob[BLOB_LEN];
	char bkey[40];
	snprintf(bkey, sizeof bkey, "%s:blob", key);
	argv[0] = "GET";
	argv[1] = bkey;
	if (r_call(rc, 2, argv, &rp) != 0)
		return 1;
	blob_of(i, blob);
	if (rp.type != '$' || rp.len != BLOB_LEN ||
	    memcmp(rp.str, blob, BLOB_LEN) != 0)
		return fail("redis GET %s: not the blob written", bkey);
	return 0;
}

/* ------------------------------------------------------------------------
 * Figures
 * ------------------------------------------------------------------------ */
typedef struct net_fig {
	net_res best;
	double median;
	double rates[16];
	int runs;
} net_fig;

static void fig_add(net_fig *f, const net_res *r)
{
	if (f->runs == 0 || r->rate > f->best.rate)
		f->best = *r;
	if (f->runs < 16)
		f->rates[f->runs++] = r->rate;
	bench_stats st;
	double tmp[16];
	memcpy(tmp, f->rates, sizeof tmp);
	bench_stats_of(tmp, f->runs, &st);
	f->median = st.median;
}

typedef struct net_case {
	const net_work *w;
	net_side *side;
	net_fig *fig;
} net_case;

/* Run each case reps times, interleaved. */
static int run_cases(const net_sizes *sz, net_case *cases, int ncases,
		     int nconns, int depth)
{
	for (int rep = 0; rep < sz->reps; rep++)
		for (int i = 0; i < ncases; i++) {
			net_res r;
			if (gen_run(sz, cases[i].w, cases[i].side->conns, nconns,
				    depth, sz->warm, sz->secs,
				    cases[i].side->srv.pid, &r) != 0)
				return 1;
			fig_add(cases[i].fig, &r);
		}
	return 0;
}

static void report_fig(const bench_ctx *ctx, const char *metric,
		       const char *unit, double weight, const char *server,
		       int conns, int depth, const net_fig *f)
{
	bench_line l = bench_line_make(metric, f->best.rate * weight, unit, 0);
	bench_line_str(&l, "server", server);
	bench_line_num(&l, "conns", conns);
	bench_line_num(&l, "depth", depth);
	bench_line_num(&l, "p50_us", f->best.p50);
	bench_line_num(&l, "p99_us", f->best.p99);
	bench_line_num(&l, "p999_us", f->best.p999);
	bench_line_num(&l, "median", f->median * weight);
	bench_line_num(&l, "runs", f->runs);
	bench_line_num(&l, "srv_cores", f->best.srv_cores);
	bench_line_num(&l, "srv_us_per_op", f->best.srv_cores / f->best.rate * 1e6);
	bench_line_num(&l, "gen_cores", f->best.gen_cores);
	if (weight != 1)
		bench_line_num(&l, "ops_per_s", f->best.rate);
	bench_report(ctx, &l);
}

static void report_ratio(const bench_ctx *ctx, const char *metric,
			 const net_fig *c, const net_fig *r, double target,
			 const char *what)
{
	double ratio = c->best.rate / r->best.rate;
	bench_line l = bench_line_make(metric, ratio, "x", 0);
	bench_line_num(&l, "target", target);
	bench_line_bool(&l, "met", ratio >= target);
	bench_line_num(&l, "conns", RATIO_CONNS);
	bench_line_num(&l, "median_ratio", c->median / r->median);
	bench_line_num(&l, "cohort_p99_us", c->best.p99);
	bench_line_num(&l, "redis_p99_us", r->best.p99);
	bench_line_str(&l, "vs", what);
	bench_report(ctx, &l);
}

/* ------------------------------------------------------------------------
 * Part 1: reads
 * ------------------------------------------------------------------------ */
typedef struct net_env {
	const bench_ctx *ctx;
	net_sizes sz;
	char cohortd[PATH_MAX];
	char redis[PATH_MAX];
	char token[40];
} net_env;

static int load_both(net_env *e, net_side *co, net_side *re)
{
	const net_sizes *sz = &e->sz;
	net_res r;
	int nload = 4;
	net_work w;

	memset(&w, 0, sizeof w);
	w.ncust = sz->ncust;
	if (c_feat_table(co->conns[0]) != 0)
		return 1;

	w.kind = W_C_PUT;
	w.proto = P_COHORT;
	w.items = (sz->ncust + PUT_BATCH - 1) / PUT_BATCH;
	if (gen_run(sz, &w, co->conns, nload, 2, 0, 0, co->srv.pid, &r) != 0)
		return 1;
	bench_note(e->ctx, "loaded %u customers x %d f64 into cohortd in "
		   "%.2f s (%.0f rows/s; PUT of %d rows, %d connections, "
		   "depth 2)", sz->ncust, NFEAT, r.seconds,
		   sz->ncust / r.seconds, PUT_BATCH, nload);

	w.kind = W_R_HSET;
	w.proto = P_RESP;
	w.items = (sz->ncust + RESP_BATCH - 1) / RESP_BATCH;
	if (gen_run(sz, &w, re->conns, nload, 2, 0, 0, re->srv.pid, &r) != 0)
		return 1;
	bench_note(e->ctx, "loaded %u hashes of %d fields into redis in "
		   "%.2f s (%.0f rows/s; %d HSETs a write)", sz->ncust, NFEAT,
		   r.seconds, sz->ncust / r.seconds, RESP_BATCH);
	w.kind = W_R_SET;
	if (gen_run(sz, &w, re->conns, nload, 2, 0, 0, re->srv.pid, &r) != 0)
		return 1;
	bench_note(e->ctx, "loaded %u blobs of %d bytes into redis in %.2f s",
		   sz->ncust, BLOB_LEN, r.seconds);

	/* the same values everywhere */
	for (uint64_t i = 0; i < sz->ncust; i += sz->ncust / 7 + 1)
		if (check_customer(co->conns[0], re->conns[0], i) != 0)
			return 1;
	if (check_customer(co->conns[0], re->conns[0], sz->ncust - 1) != 0)
		return 1;
	bench_note(e->ctx, "memory after loading: cohortd rss %.1f MB, "
		   "redis-server rss %.1f MB (hashes and blobs)",
		   proc_rss_mb(co->srv.pid), proc_rss_mb(re->srv.pid));
	return 0;
}

static void summary_head(const bench_ctx *ctx)
{
	bench_note(ctx, "%-24s %5s %5s %11s %8s %8s %8s %5s %6s %5s", "figure",
		   "conns", "depth", "per second", "p50 us", "p99 us", "p999 us",
		   "srv", "us/op", "gen");
}

static void summary_row(const bench_ctx *ctx, const char *what, int conns,
			int depth, const net_fig *f, double weight)
{
	bench_note(ctx, "%-24s %5d %5d %11.0f %8.1f %8.1f %8.1f %5.2f %6.1f %5.2f",
		   what, conns, depth, f->best.rate * weight, f->best.p50,
		   f->best.p99, f->best.p999, f->best.srv_cores,
		   f->best.srv_cores / f->best.rate * 1e6, f->best.gen_cores);
}

static int part_reads(net_env *e)
{
	const bench_ctx *ctx = e->ctx;
	const net_sizes *sz = &e->sz;
	net_side co, re;
	int rc = 1;

	memset(&co, 0, sizeof co);
	memset(&re, 0, sizeof re);
	co.proto = P_COHORT;
	re.proto = P_RESP;
	if (cohortd_start(e->cohortd, e->token, false, sz->srv_threads,
			  &co.srv) != 0)
		goto out;
	if (redis_start(e->redis, false, &re.srv) != 0)
		goto out;
	if (side_connect(&co, e->token, MAX_CONNS) != 0 ||
	    side_connect(&re, NULL, MAX_CONNS) != 0)
		goto out;
	if (load_both(e, &co, &re) != 0)
		goto out;

	net_work wg = { .kind = W_C_GET, .proto = P_COHORT, .ncust = sz->ncust };
	net_work wh = { .kind = W_R_HMGET, .proto = P_RESP, .ncust = sz->ncust };
	net_work wb = { .kind = W_R_GET, .proto = P_RESP, .ncust = sz->ncust };
	net_work wm = { .kind = W_C_GET_MANY, .proto = P_COHORT,
			.ncust = sz->ncust };
	net_work wmh = { .kind = W_R_HMGET_MANY, .proto = P_RESP,
			 .ncust = sz->ncust };
	net_fig get[NCONN_COUNTS + 1][3], many[NCONN_COUNTS][2];
	memset(get, 0, sizeof get);
	memset(many, 0, sizeof many);

	/* get at 1, 16, 64 connections, depth 1; then 16 at PIPE_DEPTH */
	for (size_t ci = 0; ci <= NCONN_COUNTS; ci++) {
		int conns = ci < NCONN_COUNTS ? conn_counts[ci] : RATIO_CONNS;
		int depth = ci < NCONN_COUNTS ? 1 : PIPE_DEPTH;
		net_case cases[3] = {
			{ &wg, &co, &get[ci][0] },
			{ &wh, &re, &get[ci][1] },
			{ &wb, &re, &get[ci][2] },
		};
		if (run_cases(sz, cases, 3, conns, depth) != 0)
			goto out;
		report_fig(ctx, "get", "req/s", 1, "cohortd", conns, depth,
			   &get[ci][0]);
		report_fig(ctx, "get_redis_hmget", "req/s", 1, "redis", conns,
			   depth, &get[ci][1]);
		report_fig(ctx, "get_redis_blob", "req/s", 1, "redis", conns,
			   depth, &get[ci][2]);
	}
	for (size_t ci = 0; ci < NCONN_COUNTS; ci++) {
		int conns = conn_counts[ci];
		net_case cases[2] = {
			{ &wm, &co, &many[ci][0] },
			{ &wmh, &re, &many[ci][1] },
		};
		if (run_cases(sz, cases, 2, conns, 1) != 0)
			goto out;
		report_fig(ctx, "get_many", "customers/s", MANY, "cohortd",
			   conns, 1, &many[ci][0]);
		report_fig(ctx, "get_many_redis_hmget", "customers/s", MANY,
			   "redis", conns, 1, &many[ci][1]);
	}

	size_t r16 = 1;   /* conn_counts[1] == RATIO_CONNS */
	report_ratio(ctx, "get_vs_redis", &get[r16][0], &get[r16][1], TARGET_GET,
		     "HMGET of 32 fields");
	{
		bench_line l = bench_line_make("get_vs_redis_blob",
			get[r16][0].best.rate / get[r16][2].best.rate, "x", 0);
		bench_line_num(&l, "conns", RATIO_CONNS);
		bench_line_num(&l, "median_ratio",
			       get[r16][0].median / get[r16][2].median);
		bench_line_num(&l, "cohort_p99_us", get[r16][0].best.p99);
		bench_line_num(&l, "redis_p99_us", get[r16][2].best.p99);
		bench_line_str(&l, "vs", "GET of a 256-byte blob");
		bench_report(ctx, &l);
	}
	{
		bench_line l = bench_line_make("get_p99_vs_redis",
			get[r16][0].best.p99 / get[r16][1].best.p99, "x", 0);
		bench_line_num(&l, "conns", RATIO_CONNS);
		bench_line_num(&l, "cohort_p99_us", get[r16][0].best.p99);
		bench_line_num(&l, "redis_hmget_p99_us", get[r16][1].best.p99);
		bench_line_num(&l, "redis_blob_p99_us", get[r16][2].best.p99);
		bench_line_bool(&l, "met", get[r16][0].best.p99 <=
				get[r16][1].best.p99);
		bench_line_str(&l, "note", "cohort p99 / HMGET p99; <= 1 wanted");
		bench_report(ctx, &l);
	}
	{
		/* the same at depth PIPE_DEPTH: request costs shared by a
		 * batch of frames per system call */
		size_t rp = NCONN_COUNTS;
		bench_line l = bench_line_make("get_vs_redis_pipelined",
			get[rp][0].best.rate / get[rp][1].best.rate, "x", 0);
		bench_line_num(&l, "conns", RATIO_CONNS);
		bench_line_num(&l, "depth", PIPE_DEPTH);
		bench_line_num(&l, "median_ratio",
			       get[rp][0].median / get[rp][1].median);
		bench_line_num(&l, "blob_ratio",
			       get[rp][0].best.rate / get[rp][2].best.rate);
		bench_line_num(&l, "cohort_p99_us", get[rp][0].best.p99);
		bench_line_num(&l, "redis_p99_us", get[rp][1].best.p99);
		bench_line_str(&l, "vs", "HMGET of 32 fields");
		bench_report(ctx, &l);
	}
	report_ratio(ctx, "get_many_vs_redis", &many[r16][0], &many[r16][1],
		     TARGET_MANY, "100 pipelined HMGETs");

	summary_head(ctx);
	for (size_t ci = 0; ci <= NCONN_COUNTS; ci++) {
		int conns = ci < NCONN_COUNTS ? conn_counts[ci] : RATIO_CONNS;
		int depth = ci < NCONN_COUNTS ? 1 : PIPE_DEPTH;
		summary_row(ctx, "get cohortd", conns, depth, &get[ci][0], 1);
		summary_row(ctx, "get redis HMGET", conns, depth, &get[ci][1], 1);
		summary_row(ctx, "get redis GET blob", conns, depth, &get[ci][2], 1);
	}
	for (size_t ci = 0; ci < NCONN_COUNTS; ci++) {
		summary_row(ctx, "get_many cohortd", conn_counts[ci], 1,
			    &many[ci][0], MANY);
		summary_row(ctx, "get_many redis 100 HMGET", conn_counts[ci], 1,
			    &many[ci][1], MANY);
	}
	rc = 0;
out:
	rc |= side_stop(&co);
	rc |= side_stop(&re);
	return rc;
}

/* ------------------------------------------------------------------------
 * Part 2: durable writes
 * ------------------------------------------------------------------------ */
static int part_events(net_env *e)
{
	const bench_ctx *ctx = e->ctx;
	const net_sizes *sz = &e->sz;
	net_side co, re;
	net_fig fc, fr;
	int rc = 1;

	memset(&co, 0, sizeof co);
	memset(&re, 0, sizeof re);
	memset(&fc, 0, sizeof fc);
	memset(&fr, 0, sizeof fr);
	co.proto = P_COHORT;
	re.proto = P_RESP;
	if (cohortd_start(e->cohortd, e->token, true, sz->srv_threads,
			  &co.srv) != 0)
		goto out;
	if (redis_start(e->redis, true, &re.srv) != 0)
		goto out;
	if (side_connect(&co, e->token, RATIO_CONNS) != 0 ||
	    side_connect(&re, NULL, RATIO_CONNS) != 0)
		goto out;
	proto_column col;
	memset(&col, 0, sizeof col);
	snprintf(col.name, sizeof col.name, "n");
	col.type = COHORT_F64;
	if (c_table(co.conns[0], "ev", &col, 1) != 0)
		goto out;

	net_work wc = { .kind = W_C_EVENT, .proto = P_COHORT, .ncust = sz->ncust };
	net_work wr = { .kind = W_R_HINCR, .proto = P_RESP, .ncust = sz->ncust };
	net_case cases[2] = { { &wc, &co, &fc }, { &wr, &re, &fr } };
	if (run_cases(sz, cases, 2, RATIO_CONNS, 1) != 0)
		goto out;
	report_fig(ctx, "event_always", "writes/s", 1, "cohortd", RATIO_CONNS,
		   1, &fc);
	report_fig(ctx, "event_redis_always", "writes/s", 1, "redis",
		   RATIO_CONNS, 1, &fr);
	report_ratio(ctx, "event_vs_redis_always", &fc, &fr, TARGET_EVENT,
		     "HINCRBYFLOAT, appendfsync always");
	summary_head(ctx);
	summary_row(ctx, "event cohortd always", RATIO_CONNS, 1, &fc, 1);
	summary_row(ctx, "HINCRBYFLOAT always", RATIO_CONNS, 1, &fr, 1);
	rc = 0;
out:
	rc |= side_stop(&co);
	rc |= side_stop(&re);
	return rc;
}

/* ------------------------------------------------------------------------
 * Part 3: knn
 * ------------------------------------------------------------------------ */
static float gauss(bench_rng *r)
{
	double u1 = (double)(bench_rng_next(r) >> 11) * 0x1p-53;
	double u2 = bench_rng_float(r);
	return (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2));
}

/* bench_ann.c's synthetic customers: 1024 Gaussian segments in 64-d. */
static void synth(uint32_t n, uint32_t nq, float **base, float **queries)
{
	bench_rng rng, qrng;
	float *centres = bench_alloc(KNN_SEGMENTS * KNN_DIM * sizeof(float));
	float spread[KNN_SEGMENTS];
	double cum[KNN_SEGMENTS], total = 0;

	bench_rng_seed(&rng, SEED);
	bench_rng_seed(&qrng, SEED ^ 0x71756572ull);
	for (size_t s = 0; s < KNN_SEGMENTS; s++) {
		for (size_t j = 0; j < KNN_DIM; j++)
			centres[s * KNN_DIM + j] = gauss(&rng);
		spread[s] = 0.15f + 0.3f * bench_rng_float(&rng);
		total += exp(3.4 * bench_rng_float(&rng));
		cum[s] = total;
	}
	for (size_t s = 0; s < KNN_SEGMENTS; s++)
		cum[s] /= total;
	*base = bench_alloc((size_t)n * KNN_DIM * sizeof(float));
	*queries = bench_alloc((size_t)nq * KNN_DIM * sizeof(float));
	for (int pass = 0; pass < 2; pass++) {
		bench_rng *r = pass ? &qrng : &rng;
		float *out = pass ? *queries : *base;
		size_t cnt = pass ? nq : n;
		for (size_t i = 0; i < cnt; i++) {
			double u = (double)(bench_rng_next(r) >> 11) * 0x1p-53;
			size_t lo = 0, hi = KNN_SEGMENTS - 1;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;
				if (cum[mid] < u)
					lo = mid + 1;
				else
					hi = mid;
			}
			for (size_t j = 0; j < KNN_DIM; j++)
				out[i * KNN_DIM + j] = centres[lo * KNN_DIM + j] +
					spread[lo] * gauss(r);
		}
	}
	free(centres);
}

typedef struct knn_truth {
	const float *base, *queries;
	uint32_t n;
	float *kth;              /* nq: the TOPK-th smallest distance */
} knn_truth;

static void truth_part(void *p, int part, size_t lo, size_t hi)
{
	knn_truth *t = p;
	const dist_kernels *k = dist_get();
	float *dist = bench_alloc((size_t)t->n * sizeof(float));
	(void)part;
	for (size_t q = lo; q < hi; q++) {
		float best[TOPK];
		for (int i = 0; i < TOPK; i++)
			best[i] = INFINITY;
		k->l2sq_many(t->queries + q * KNN_DIM, t->base, KNN_DIM, t->n,
			     KNN_DIM, dist);
		for (uint32_t i = 0; i < t->n; i++) {
			if (dist[i] >= best[TOPK - 1])
				continue;
			int j = TOPK - 1;
			while (j > 0 && best[j - 1] > dist[i]) {
				best[j] = best[j - 1];
				j--;
			}
			best[j] = dist[i];
		}
		t->kth[q] = best[TOPK - 1];
	}
	free(dist);
}

/* recall@10 of the index at ef over the queries, one by one on c. */
static int knn_recall(net_conn *c, const knn_truth *t, uint32_t nq,
		      uint32_t ef, double *recall)
{
	const dist_kernels *k = dist_get();
	uint64_t hits = 0;
	for (uint32_t q = 0; q < nq; q++) {
		proto_req r;
		proto_rbuf b;
		const float *x = t->queries + (size_t)q * KNN_DIM;
		req_init(&r, PROTO_OP_KNN, 0, "vecs");
		snprintf(r.name, sizeof r.name, "ix");
		memset(&r.u.knn, 0, sizeof r.u.knn);
		r.u.knn.k = TOPK;
		r.u.knn.ef = ef;
		r.u.knn.at = COHORT_NOW;
		r.u.knn.dim = KNN_DIM;
		r.u.knn.vec = (float *)x;
		if (c_must(c, &r, &b) != 0)
			return 1;
		uint32_t n = proto_r_u32(&b);
		if (b.err || n > TOPK)
			return fail("knn: %u neighbours", n);
		double thr = (double)t->kth[q] * (1 + RECALL_TOL);
		for (uint32_t i = 0; i < n; i++) {
			size_t klen;
			(void)proto_r_f32(&b);
			const char *key = proto_r_str8(&b, &klen);
			char num[24];
			if (b.err || klen <= 4 || klen - 4 >= sizeof num ||
			    memcmp(key, "cust", 4) != 0)
				return fail("knn: a key not of the set");
			memcpy(num, key + 4, klen - 4);
			num[klen - 4] = 0;
			unsigned long id = strtoul(num, NULL, 10);
			if (id >= t->n)
				return fail("knn: key %s not of the set", num);
			if (k->l2sq(x, t->base + id * KNN_DIM, KNN_DIM) <= thr)
				hits++;
		}
	}
	*recall = (double)hits / ((double)nq * TOPK);
	return 0;
}

static int part_knn(net_env *e)
{
	const bench_ctx *ctx = e->ctx;
	const net_sizes *sz = &e->sz;
	net_side co;
	float *base = NULL, *queries = NULL;
	knn_truth t;
	int rc = 1;

	memset(&co, 0, sizeof co);
	memset(&t, 0, sizeof t);
	co.proto = P_COHORT;
	synth(sz->knn_n, sz->knn_nq, &base, &queries);
	t.base = base;
	t.queries = queries;
	t.n = sz->knn_n;
	t.kth = bench_alloc(sz->knn_nq * sizeof(float));
	double t0 = bench_now();
	par_run(par_threads(0), sz->knn_nq, truth_part, &t);
	bench_note(ctx, "knn: %u synthetic customers x %d (1024 Gaussian "
		   "segments, bench_ann's generator), %u queries; exact top %d "
		   "in %.2f s", sz->knn_n, KNN_DIM, sz->knn_nq, TOPK,
		   bench_now() - t0);

	if (cohortd_start(e->cohortd, e->token, false, sz->srv_threads,
			  &co.srv) != 0)
		goto out;
	if (side_connect(&co, e->token, RATIO_CONNS) != 0)
		goto out;
	proto_column col;
	memset(&col, 0, sizeof col);
	snprintf(col.name, sizeof col.name, "v");
	col.type = COHORT_VEC;
	col.dim = KNN_DIM;
	if (c_table(co.conns[0], "vecs", &col, 1) != 0)
		goto out;
	net_work wl = { .kind = W_C_PUTVEC, .proto = P_COHORT, .vecs = base,
			.nvecs = sz->knn_n,
			.items = (sz->knn_n + PUT_BATCH - 1) / PUT_BATCH };
	net_res lr;
	if (gen_run(sz, &wl, co.conns, 4, 2, 0, 0, co.srv.pid, &lr) != 0)
		goto out;
	proto_req r;
	proto_rbuf b;
	req_init(&r, PROTO_OP_INDEX_CREATE, 0, "vecs");
	snprintf(r.name, sizeof r.name, "ix");
	memset(&r.u.index_create, 0, sizeof r.u.index_create);
	r.u.index_create.column = 0;
	r.u.index_create.opts.metric = COHORT_METRIC_L2;
	r.u.index_create.opts.M = 16;
	r.u.index_create.opts.ef_construction = 200;
	t0 = bench_now();
	if (c_must(co.conns[0], &r, &b) != 0)
		goto out;
	bench_note(ctx, "knn: vectors loaded in %.2f s; INDEX_CREATE (M 16, "
		   "ef_construction 200, L2) over the network: %.1f s",
		   lr.seconds, bench_now() - t0);

	/* the smallest ef at recall >= 0.95 */
	uint32_t ef = 0;
	double recall = 0;
	for (size_t i = 0; i < NEF; i++) {
		double rec = 0;
		if (knn_recall(co.conns[0], &t, sz->knn_nq, efs[i], &rec) != 0)
			goto out;
		bench_note(ctx, "knn: ef %u: recall@%d %.4f", efs[i], TOPK, rec);
		if (rec >= TARGET_RECALL) {
			ef = efs[i];
			recall = rec;
			break;
		}
	}
	if (ef == 0) {
		fail("knn: no ef up to %u reaches recall %.2f", efs[NEF - 1],
		     TARGET_RECALL);
		goto out;
	}
	net_work wk = { .kind = W_C_KNN, .proto = P_COHORT, .k = TOPK, .ef = ef,
			.vecs = queries, .nvecs = sz->knn_nq };
	net_fig fk;
	memset(&fk, 0, sizeof fk);
	net_case cases[1] = { { &wk, &co, &fk } };
	if (run_cases(sz, cases, 1, RATIO_CONNS, 1) != 0)
		goto out;
	bench_line l = bench_line_make("knn_qps_net", fk.best.rate,
				       "queries/s", 0);
	bench_line_num(&l, "conns", RATIO_CONNS);
	bench_line_num(&l, "k", TOPK);
	bench_line_num(&l, "ef", ef);
	bench_line_num(&l, "recall", recall);
	bench_line_num(&l, "n", sz->knn_n);
	bench_line_num(&l, "dim", KNN_DIM);
	bench_line_num(&l, "p50_us", fk.best.p50);
	bench_line_num(&l, "p99_us", fk.best.p99);
	bench_line_num(&l, "p999_us", fk.best.p999);
	bench_line_num(&l, "median", fk.median);
	bench_line_num(&l, "srv_cores", fk.best.srv_cores);
	bench_line_num(&l, "srv_us_per_op", fk.best.srv_cores / fk.best.rate * 1e6);
	bench_report(ctx, &l);
	summary_head(ctx);
	summary_row(ctx, "knn cohortd", RATIO_CONNS, 1, &fk, 1);
	rc = 0;
out:
	rc |= side_stop(&co);
	free(base);
	free(queries);
	free(t.kth);
	return rc;
}

/* ------------------------------------------------------------------------
 * The suite
 * ------------------------------------------------------------------------ */
int bench_net(bench_ctx *ctx)
{
	net_env e;
	memset(&e, 0, sizeof e);
	e.ctx = ctx;
	const char *alt = getenv("COHORT_BENCH_COHORTD"); /* A/B: another build */
	if (alt && *alt)
		snprintf(e.cohortd, sizeof e.cohortd, "%s", alt);
	else if (!cohortd_path(e.cohortd, sizeof e.cohortd))
		return fail("no cohortd next to cohort-bench (%s): build it "
			    "with `make`", e.cohortd);
	if (!path_exec("redis-server", e.redis, sizeof e.redis))
		return fail("no redis-server: install Debian's redis-server "
			    "(`make deps` does)");
	bench_rng rng;
	bench_rng_seed(&rng, (uint64_t)time(NULL) ^ (uint64_t)getpid());
	for (int i = 0; i < 32; i++)
		e.token[i] = "0123456789abcdef"[bench_rng_next(&rng) & 15];
	e.token[32] = 0;
	hm_fields_init();

	net_sizes *sz = &e.sz;
	sz->ncust = ctx->quick ? 10000 : 100000;
	sz->knn_n = ctx->quick ? 5000 : 20000;
	sz->knn_nq = ctx->quick ? 100 : 500;
	sz->warm = ctx->quick ? 0.05 : 0.2;
	sz->secs = ctx->quick ? 0.2 : 1.0;
	sz->reps = ctx->quick ? 1 : 3;
	sz->srv_threads = ctx->cores > 1 ? ctx->cores - 1 : 1;  /* the default */
	sz->gen_threads = ctx->cores <= 4 ? 1 : ctx->cores / 4;

	double load[3] = { NAN, NAN, NAN };
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
			load[0] = NAN;
		fclose(f);
	}
	bench_note(ctx, "cohortd (%s, --threads %d) and redis-server (%s) on "
		   "loopback, one generator of %d thread%s; the servers and "
		   "the generator share this machine's %d cores; %u customers "
		   "x %d f64; each figure: best of %d run%s of %.2f s after "
		   "%.2f s warm-up, runs interleaved; loadavg at start %.2f "
		   "%.2f %.2f", e.cohortd, sz->srv_threads, e.redis,
		   sz->gen_threads, sz->gen_threads > 1 ? "s" : "", ctx->cores,
		   sz->ncust, NFEAT, sz->reps, sz->reps > 1 ? "s" : "",
		   sz->secs, sz->warm, load[0], load[1], load[2]);

	/* COHORT_BENCH_NET=reads,events,knn runs only the parts named (to
	 * iterate on one); unset or empty, all three */
	const char *parts = getenv("COHORT_BENCH_NET");
	if (parts && !*parts)
		parts = NULL;
	int rc = 0;
	if (!parts || strstr(parts, "reads"))
		rc = part_reads(&e);
	if (rc == 0 && (!parts || strstr(parts, "events")))
		rc = part_events(&e);
	if (rc == 0 && (!parts || strstr(parts, "knn")))
		rc = part_knn(&e);
	return rc;
}
