/*
 * metrics.c -- cohortd's counters (metrics.h) and their Prometheus text
 * exposition, served by a small HTTP/1.0 thread.
 *
 * Counters: per opcode (all 256 codes, so a hostile opcode needs no
 * lookup), requests by status class and a latency histogram with fixed
 * bounds from 10 us to 5 s. Every update is a relaxed atomic add: loops
 * never lock, and a scrape may see one request's count before its
 * histogram bucket (Prometheus tolerates that; nothing else reads them).
 *
 * Rendering also reads the database through the public API (tables, rows,
 * memory, indexes, persona models: all thread-safe calls) and, for a
 * database in a directory, the sizes of its log segments and its newest
 * snapshot (dir/wal-*.log, dir/snap-*.snap).
 *
 * The HTTP thread serves one connection at a time with a 2 s timeout on
 * the request, so a stuck scraper delays the next scrape at most that
 * long and never touches the event loops.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "proto.h"
#include "server.h"

enum { CLASS_OK, CLASS_CLIENT, CLASS_SERVER, NCLASS };
static const char *const class_name[NCLASS] = { "ok", "client_error",
						"server_error" };

/* upper bounds of the latency buckets, in ns and as Prometheus writes them */
static const uint64_t bucket_ns[] = {
	10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
	5000000, 10000000, 25000000, 50000000, 100000000, 250000000,
	500000000, 1000000000, 2500000000u, 5000000000u };
static const char *const bucket_le[] = {
	"1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
	"0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
	"2.5", "5" };
#define NBUCKET (sizeof bucket_ns / sizeof bucket_ns[0])

typedef struct op_stats {
	_Atomic uint64_t count[NCLASS];
	_Atomic uint64_t bucket[NBUCKET + 1];   /* last: over every bound */
	_Atomic uint64_t sum_ns;
} op_stats;

struct metrics {
	op_stats ops[256];
	_Atomic int64_t conns;
	_Atomic uint64_t conns_opened, bytes_in, bytes_out;
	char *dir;
	char *server_io;
	time_t started;
};

metrics *metrics_new(void)
{
	metrics *m = calloc(1, sizeof *m);
	if (m)
		m->started = time(NULL);
	return m;
}

void metrics_free(metrics *m)
{
	if (!m)
		return;
	free(m->dir);
	free(m->server_io);
	free(m);
}

void metrics_set_info(metrics *m, const char *dir, const char *server_io)
{
	free(m->dir);
	free(m->server_io);
	m->dir = dir ? strdup(dir) : NULL;
	m->server_io = server_io ? strdup(server_io) : NULL;
}

static int status_class(int status)
{
	if (status >= 0)
		return CLASS_OK;
	if (status == COHORT_ENOMEM || status == COHORT_EIO ||
	    status == COHORT_ECORRUPT)
		return CLASS_SERVER;
	return CLASS_CLIENT;
}

void metrics_request(metrics *m, int op, int status, uint64_t ns)
{
	op_stats *o = &m->ops[op & 0xff];
	atomic_fetch_add_explicit(&o->count[status_class(status)], 1,
				  memory_order_relaxed);
	size_t b = 0;
	while (b < NBUCKET && ns > bucket_ns[b])
		b++;
	atomic_fetch_add_explicit(&o->bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&o->sum_ns, ns, memory_order_relaxed);
}

void metrics_conn(metrics *m, int delta)
{
	atomic_fetch_add_explicit(&m->conns, delta, memory_order_relaxed);
	if (delta > 0)
		atomic_fetch_add_explicit(&m->conns_opened, (uint64_t)delta,
					  memory_order_relaxed);
}

void metrics_bytes(metrics *m, uint64_t in, uint64_t out)
{
	if (in)
		atomic_fetch_add_explicit(&m->bytes_in, in, memory_order_relaxed);
	if (out)
		atomic_fetch_add_explicit(&m->bytes_out, out,
					  memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Rendering
 * ------------------------------------------------------------------------ */
static void head(FILE *f, const char *name, const char *type,
		 const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the text format wants. */
static void label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f), fputc(*s, f);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static const char *op_label(int op, char *buf, size_t len)
{
	const char *name = proto_op_name(op);
	if (name)
		return name;
	snprintf(buf, len, "0x%02x", op);
	return buf;
}

static void render_requests(FILE *f, metrics *m)
{
	char buf[8];
	head(f, "cohort_requests_total", "counter",
	     "Requests answered, by opcode and status class.");
	for (int op = 0; op < 256; op++)
		for (int c = 0; c < NCLASS; c++) {
			uint64_t n = atomic_load_explicit(&m->ops[op].count[c],
							  memory_order_relaxed);
			if (n || (c == CLASS_OK && proto_op_name(op)))
				fprintf(f, "cohort_requests_total{op=\"%s\","
					"status=\"%s\"} %" PRIu64 "\n",
					op_label(op, buf, sizeof buf),
					class_name[c], n);
		}
	head(f, "cohort_request_duration_seconds", "histogram",
	     "Time from a request's decoding to its response, by opcode.");
	for (int op = 0; op < 256; op++) {
		op_stats *o = &m->ops[op];
		uint64_t cum = 0, b[NBUCKET + 1];
		for (size_t i = 0; i <= NBUCKET; i++) {
			b[i] = atomic_load_explicit(&o->bucket[i],
						    memory_order_relaxed);
			cum += b[i];
		}
		if (cum == 0)
			continue;
		const char *name = op_label(op, buf, sizeof buf);
		cum = 0;
		for (size_t i = 0; i < NBUCKET; i++) {
			cum += b[i];
			fprintf(f, "cohort_request_duration_seconds_bucket{op=\"%s\","
				"le=\"%s\"} %" PRIu64 "\n", name, bucket_le[i], cum);
		}
		cum += b[NBUCKET];
		fprintf(f, "cohort_request_duration_seconds_bucket{op=\"%s\","
			"le=\"+Inf\"} %" PRIu64 "\n", name, cum);
		fprintf(f, "cohort_request_duration_seconds_sum{op=\"%s\"} %.9f\n",
			name, (double)atomic_load_explicit(&o->sum_ns,
							   memory_order_relaxed) / 1e9);
		fprintf(f, "cohort_request_duration_seconds_count{op=\"%s\"} %"
			PRIu64 "\n", name, cum);
	}
}

static void render_server(FILE *f, metrics *m)
{
	head(f, "cohort_connections", "gauge", "Client connections open.");
	fprintf(f, "cohort_connections %" PRId64 "\n",
		atomic_load_explicit(&m->conns, memory_order_relaxed));
	head(f, "cohort_connections_opened_total", "counter",
	     "Client connections accepted since start.");
	fprintf(f, "cohort_connections_opened_total %" PRIu64 "\n",
		atomic_load_explicit(&m->conns_opened, memory_order_relaxed));
	head(f, "cohort_received_bytes_total", "counter",
	     "Bytes received from clients.");
	fprintf(f, "cohort_received_bytes_total %" PRIu64 "\n",
		atomic_load_explicit(&m->bytes_in, memory_order_relaxed));
	head(f, "cohort_sent_bytes_total", "counter", "Bytes sent to clients.");
	fprintf(f, "cohort_sent_bytes_total %" PRIu64 "\n",
		atomic_load_explicit(&m->bytes_out, memory_order_relaxed));
	head(f, "cohort_start_time_seconds", "gauge",
	     "When the server started, in seconds since the epoch.");
	fprintf(f, "cohort_start_time_seconds %lld\n", (long long)m->started);
	if (m->server_io) {
		head(f, "cohort_server_info", "gauge",
		     "How the server does its network I/O.");
		fputs("cohort_server_info{io_path=\"", f);
		label(f, m->server_io);
		fputs("\"} 1\n", f);
	}
}

static void render_tables(FILE *f, cohort_db *db)
{
	size_t nt = cohort_db_ntables(db);
	head(f, "cohort_tables", "gauge", "Tables in the database.");
	fprintf(f, "cohort_tables %zu\n", nt);
	head(f, "cohort_rows", "gauge", "Rows present per table (expired "
	     "rows included).");
	for (size_t i = 0; i < nt; i++) {
		cohort_table *t;
		cohort_table_info ti;
		if (cohort_table_open(db, cohort_db_table_name(db, i), &t) ||
		    cohort_table_describe(t, &ti))
			continue;
		fprintf(f, "cohort_rows{table=\"%s\"} %" PRIu64 "\n", ti.name,
			ti.nrows);
	}
	head(f, "cohort_memory_bytes", "gauge",
	     "Memory held per table, allocator rounding included.");
	for (size_t i = 0; i < nt; i++) {
		cohort_table *t;
		cohort_table_info ti;
		if (cohort_table_open(db, cohort_db_table_name(db, i), &t) ||
		    cohort_table_describe(t, &ti))
			continue;
		fprintf(f, "cohort_memory_bytes{table=\"%s\"} %" PRIu64 "\n",
			ti.name, ti.mem_bytes);
	}
	head(f, "cohort_index_nodes", "gauge", "Rows in a similarity index's "
	     "graph.");
	head(f, "cohort_index_pending", "gauge", "Rows waiting for a "
	     "similarity index's graph.");
	head(f, "cohort_index_memory_bytes", "gauge", "Memory of a similarity "
	     "index.");
	head(f, "cohort_persona_assigned", "gauge", "Rows with a persona, per "
	     "model.");
	head(f, "cohort_persona_pending", "gauge", "Changed rows waiting to "
	     "be reassigned, per model.");
	head(f, "cohort_persona_version", "gauge", "Current version of a "
	     "persona model.");
	for (size_t i = 0; i < nt; i++) {
		cohort_table *t;
		const char *tname = cohort_db_table_name(db, i);
		if (cohort_table_open(db, tname, &t))
			continue;
		const char *names[COHORT_MAX_MODELS > COHORT_MAX_INDEXES ?
				  COHORT_MAX_MODELS : COHORT_MAX_INDEXES];
		size_t n = 0;
		if (cohort_index_list(t, names, COHORT_MAX_INDEXES, &n) == 0)
			for (size_t j = 0; j < n && j < COHORT_MAX_INDEXES; j++) {
				cohort_index_info ii;
				if (cohort_index_describe(t, names[j], &ii))
					continue;
				fprintf(f, "cohort_index_nodes{table=\"%s\",index=\"%s\"} %"
					PRIu64 "\n", tname, names[j], ii.nodes);
				fprintf(f, "cohort_index_pending{table=\"%s\",index=\"%s\"} %"
					PRIu64 "\n", tname, names[j], ii.pending);
				fprintf(f, "cohort_index_memory_bytes{table=\"%s\",index=\"%s\"} %"
					PRIu64 "\n", tname, names[j], ii.bytes);
			}
		n = 0;
		if (cohort_persona_models(t, names, COHORT_MAX_MODELS, &n) == 0)
			for (size_t j = 0; j < n && j < COHORT_MAX_MODELS; j++) {
				cohort_persona_info pi;
				if (cohort_persona_describe(t, names[j], &pi))
					continue;
				fprintf(f, "cohort_persona_assigned{table=\"%s\",model=\"%s\"} %"
					PRIu64 "\n", tname, names[j], pi.assigned);
				fprintf(f, "cohort_persona_pending{table=\"%s\",model=\"%s\"} %"
					PRIu64 "\n", tname, names[j], pi.pending);
				fprintf(f, "cohort_persona_version{table=\"%s\",model=\"%s\"} %"
					PRIu64 "\n", tname, names[j], pi.version);
			}
	}
}

static bool has_affixes(const char *s, const char *pre, const char *suf)
{
	size_t n = strlen(s), p = strlen(pre), q = strlen(suf);
	return n > p + q && !strncmp(s, pre, p) && !strcmp(s + n - q, suf);
}

static void render_log(FILE *f, metrics *m, cohort_db *db)
{
	head(f, "cohort_log_info", "gauge",
	     "How the write-ahead log writes (memory: no log).");
	fputs("cohort_log_info{io_path=\"", f);
	label(f, cohort_db_io_path(db));
	fputs("\"} 1\n", f);
	if (!m->dir)
		return;
	DIR *d = opendir(m->dir);
	if (!d)
		return;
	uint64_t log_bytes = 0, nseg = 0, snap_bytes = 0;
	time_t snap_time = 0;
	char newest[256] = "";
	struct dirent *e;
	char path[4352];
	struct stat st;
	while ((e = readdir(d))) {
		bool wal = has_affixes(e->d_name, "wal-", ".log");
		bool snap = has_affixes(e->d_name, "snap-", ".snap");
		if (!wal && !snap)
			continue;
		snprintf(path, sizeof path, "%s/%s", m->dir, e->d_name);
		if (stat(path, &st))
			continue;
		if (wal) {
			log_bytes += (uint64_t)st.st_size;
			nseg++;
		} else if (strcmp(e->d_name, newest) > 0) {
			/* names carry zero-padded LSNs: the greatest is newest */
			snprintf(newest, sizeof newest, "%s", e->d_name);
			snap_bytes = (uint64_t)st.st_size;
			snap_time = st.st_mtime;
		}
	}
	closedir(d);
	head(f, "cohort_log_bytes", "gauge",
	     "Bytes of the write-ahead log's segments on disk (what a "
	     "restart replays on top of the newest snapshot; the open "
	     "segment is preallocated 16 MiB at a time).");
	fprintf(f, "cohort_log_bytes %" PRIu64 "\n", log_bytes);
	head(f, "cohort_log_segments", "gauge", "Files of the write-ahead log.");
	fprintf(f, "cohort_log_segments %" PRIu64 "\n", nseg);
	head(f, "cohort_snapshot_bytes", "gauge",
	     "Size of the newest snapshot (0: none).");
	fprintf(f, "cohort_snapshot_bytes %" PRIu64 "\n", snap_bytes);
	head(f, "cohort_snapshot_timestamp_seconds", "gauge",
	     "When the newest snapshot was written (0: none).");
	fprintf(f, "cohort_snapshot_timestamp_seconds %lld\n",
		(long long)snap_time);
}

char *metrics_render(metrics *m, cohort_db *db)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	render_requests(f, m);
	render_server(f, m);
	if (db) {
		render_tables(f, db);
		render_log(f, m, db);
	}
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------ */
struct metrics_http {
	metrics *m;
	cohort_db *db;
	int lfd;
	int stop_pipe[2];
	pthread_t th;
};

static void send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void reply(int fd, const char *status, const char *type,
		  const char *body, size_t len)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof hdr, "HTTP/1.0 %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, type, len);
	send_all(fd, hdr, (size_t)n);
	send_all(fd, body, len);
}

static void serve_one(metrics_http *h, int fd)
{
	struct timeval tv = { .tv_sec = 2, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	/* the request line and headers; the body (none for GET) is ignored */
	char req[4096];
	size_t len = 0;
	while (len < sizeof req - 1) {
		ssize_t r = recv(fd, req + len, sizeof req - 1 - len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
		req[len] = 0;
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[len] = 0;
	char method[16], target[1024];
	if (sscanf(req, "%15s %1023s", method, target) != 2) {
		static const char msg[] = "bad request\n";
		reply(fd, "400 Bad Request", "text/plain", msg, sizeof msg - 1);
		return;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		static const char msg[] = "only GET\n";
		reply(fd, "405 Method Not Allowed", "text/plain", msg,
		      sizeof msg - 1);
		return;
	}
	char *q = strchr(target, '?');
	if (q)
		*q = 0;
	if (strcmp(target, "/metrics")) {
		static const char msg[] = "not found: try /metrics\n";
		reply(fd, "404 Not Found", "text/plain", msg, sizeof msg - 1);
		return;
	}
	char *body = metrics_render(h->m, h->db);
	if (!body) {
		static const char msg[] = "out of memory\n";
		reply(fd, "500 Internal Server Error", "text/plain", msg,
		      sizeof msg - 1);
		return;
	}
	reply(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8",
	      body, strcmp(method, "HEAD") ? strlen(body) : 0);
	free(body);
}

static void *http_main(void *arg)
{
	metrics_http *h = arg;
	pthread_setname_np(pthread_self(), "cohortd-metrics");
	for (;;) {
		struct pollfd p[2] = { { h->lfd, POLLIN, 0 },
				       { h->stop_pipe[0], POLLIN, 0 } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			server_log("metrics: poll: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				poll(NULL, 0, 100);
			continue;
		}
		serve_one(h, fd);
		close(fd);
	}
	return NULL;
}

int metrics_http_start(metrics *m, cohort_db *db, const char *listen,
		       metrics_http **out, int *port, char *err,
		       size_t err_len)
{
	*out = NULL;
	metrics_http *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, err_len, "out of memory");
		return COHORT_ENOMEM;
	}
	h->m = m;
	h->db = db;
	h->lfd = server_listen_fd(listen, port, err, err_len);
	if (h->lfd < 0) {
		int rc = h->lfd;
		free(h);
		return rc;
	}
	if (pipe2(h->stop_pipe, O_CLOEXEC)) {
		snprintf(err, err_len, "pipe: %s", strerror(errno));
		close(h->lfd);
		free(h);
		return COHORT_EIO;
	}
	int rc = pthread_create(&h->th, NULL, http_main, h);
	if (rc) {
		snprintf(err, err_len, "thread: %s", strerror(rc));
		close(h->lfd);
		close(h->stop_pipe[0]);
		close(h->stop_pipe[1]);
		free(h);
		return COHORT_ENOMEM;
	}
	*out = h;
	return 0;
}

void metrics_http_stop(metrics_http *h)
{
	if (!h)
		return;
	ssize_t w = write(h->stop_pipe[1], "x", 1);
	(void)w;
	pthread_join(h->th, NULL);
	close(h->lfd);
	close(h->stop_pipe[0]);
	close(h->stop_pipe[1]);
	free(h);
}
