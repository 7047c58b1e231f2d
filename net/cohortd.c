/*
 * cohortd.c -- the cohort server: flags and config file, tokens, the
 * database, the event loops (server.c), the metrics endpoint, signals.
 *
 * Settings come from defaults, then the config file (--config FILE:
 * "key = value" lines whose keys are the flags' names without the leading
 * dashes, '#' starting a comment), then the command line, each overriding
 * the one before. Tokens are read only from a file (--token-file, mode
 * 0600 or stricter); without one cohortd refuses to start unless told
 * --no-auth.
 *
 * Signals: SIGTERM and SIGINT are blocked in every thread and taken by
 * the main thread with sigwait, so no handler runs in the middle of a
 * loop; SIGPIPE is ignored (sends use MSG_NOSIGNAL anyway).
 *
 * Exit status: 0 after a clean stop, 2 for a usage error (bad flag,
 * value or config file), 1 for any other failure (tokens, data
 * directory, address in use, final sync).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "auth.h"
#include "cohort.h"
#include "conn.h"
#include "metrics.h"
#include "proto.h"
#include "server.h"

#define COHORTD_VERSION "1.0.0"
#define OUT_LIMIT (1u << 20)       /* unsent bytes per connection */
#define MAX_SUBS 16

typedef struct settings {
	char *config;
	char *listen;
	char *dir;
	bool memory;
	cohort_fsync fsync;
	uint32_t fsync_interval_ms;
	unsigned threads;
	char *token_file;
	bool no_auth;
	uint32_t max_frame, max_batch, max_k;
	unsigned max_conns;
	double idle_timeout, auth_timeout;   /* seconds */
	char *metrics;
	char *port_file;
	bool no_uring;
	bool salvage;
	uint64_t snapshot_log_bytes;
} settings;

static const char usage_text[] =
"usage: cohortd [options]\n"
"\n"
"The cohort server: serves a cohort database over the binary protocol of\n"
"docs/protocol.md. Logs go to stderr.\n"
"\n"
"  --config FILE            read settings from FILE first: one \"key = value\"\n"
"                           per line, keys are these flags without the dashes\n"
"                           (\"fsync = always\", \"no-auth = true\"), '#' comments;\n"
"                           flags given on the command line win\n"
"  --listen HOST:PORT       address to serve (default 127.0.0.1:7411; port 0:\n"
"                           any free port, see --port-file)\n"
"  --dir PATH               data directory (default ./var)\n"
"  --memory                 keep the database in memory only (no --dir)\n"
"  --fsync POLICY           always | interval | none (default interval)\n"
"  --fsync-interval-ms N    sync period of the interval policy (default 10)\n"
"  --threads N              event-loop threads (default: the number of cores\n"
"                           minus one, at least one)\n"
"  --token-file PATH        tokens, one \"<role> <token>\" per line, role read,\n"
"                           write or admin; the file must be mode 0600 or stricter\n"
"  --no-auth                serve without tokens (every client is admin)\n"
"  --max-frame BYTES        largest request body (default 16777216)\n"
"  --max-batch N            most rows or keys in one request (default 10000)\n"
"  --max-k N                most neighbours in one knn (default 1000)\n"
"  --max-conns N            most connections at once (default 10000; 0: no limit)\n"
"  --idle-timeout SEC       close connections silent for SEC seconds (default 0:\n"
"                           never)\n"
"  --auth-timeout SEC       close connections not authenticated after SEC\n"
"                           seconds (default 10)\n"
"  --metrics HOST:PORT      serve Prometheus metrics at http://HOST:PORT/metrics\n"
"                           (default: off)\n"
"  --port-file PATH         write the bound port (decimal, newline) once listening\n"
"  --no-uring               use epoll (and pwrite for the log) even where\n"
"                           io_uring works\n"
"  --snapshot-log-bytes N   snapshot automatically after N bytes of log (default\n"
"                           0: only on SNAPSHOT requests and at stop)\n"
"  --salvage                open what is intact past damage in the log or a\n"
"                           snapshot (what was lost is logged, and the damaged\n"
"                           file kept as *.damaged) instead of refusing to start\n"
"  --help                   this text\n"
"  --version                the version\n"
"\n"
"SIGTERM or SIGINT: stop accepting, answer the requests in flight, sync,\n"
"snapshot, exit 0. SIGHUP is logged and ignored (tokens and settings are\n"
"read at start: restart to change them). Exit status: 0 clean stop,\n"
"1 failure, 2 usage error.\n";

static void usage_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

/* "FILE line N" while a config file's line is applied, so that a bad
 * value there is reported with its place */
static const char *config_where;

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "cohortd: ");
	if (config_where)
		fprintf(stderr, "%s: ", config_where);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(cohortd --help lists the options)\n");
	va_end(ap);
	exit(2);
}

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
	if (!*dst) {
		fprintf(stderr, "cohortd: out of memory\n");
		exit(1);
	}
}

static uint64_t parse_uint(const char *key, const char *v, uint64_t lo,
			   uint64_t hi)
{
	char *end;
	errno = 0;
	if (!*v || *v == '-')
		goto bad;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		goto bad;
	return x;
bad:
	usage_error("%s: '%s' is not a whole number from %llu to %llu", key, v,
		    (unsigned long long)lo, (unsigned long long)hi);
}

static double parse_seconds(const char *key, const char *v)
{
	char *end;
	errno = 0;
	double x = strtod(v, &end);
	if (!*v || errno || *end || !(x >= 0) || x > 86400 * 365)
		usage_error("%s: '%s' is not a number of seconds (0 or more)",
			    key, v);
	return x;
}

static bool parse_bool(const char *key, const char *v)
{
	if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcmp(v, "1") ||
	    !strcasecmp(v, "on"))
		return true;
	if (!strcasecmp(v, "false") || !strcasecmp(v, "no") ||
	    !strcmp(v, "0") || !strcasecmp(v, "off"))
		return false;
	usage_error("%s: '%s' is not true or false", key, v);
}

/* Is this key a flag without a value? */
static bool is_switch(const char *key)
{
	return !strcmp(key, "memory") || !strcmp(key, "no-auth") ||
	       !strcmp(key, "no-uring") || !strcmp(key, "salvage");
}

static bool is_key(const char *key)
{
	static const char *const keys[] = {
		"listen", "dir", "fsync", "fsync-interval-ms", "threads",
		"token-file", "max-frame", "max-batch", "max-k", "max-conns",
		"idle-timeout", "auth-timeout", "metrics", "port-file",
		"snapshot-log-bytes" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strcmp(key, keys[i]))
			return true;
	return is_switch(key);
}

/* Apply one setting; key without dashes. v is NULL for a switch given on
 * the command line. Returns false for an unknown key. */
static bool apply(settings *st, const char *key, const char *v)
{
	if (is_switch(key)) {
		bool on = v ? parse_bool(key, v) : true;
		if (!strcmp(key, "memory"))
			st->memory = on;
		else if (!strcmp(key, "no-auth"))
			st->no_auth = on;
		else if (!strcmp(key, "salvage"))
			st->salvage = on;
		else
			st->no_uring = on;
		return true;
	}
	if (!strcmp(key, "listen"))
		set_str(&st->listen, v);
	else if (!strcmp(key, "dir"))
		set_str(&st->dir, v);
	else if (!strcmp(key, "fsync")) {
		if (!strcmp(v, "always"))
			st->fsync = COHORT_FSYNC_ALWAYS;
		else if (!strcmp(v, "interval"))
			st->fsync = COHORT_FSYNC_INTERVAL;
		else if (!strcmp(v, "none"))
			st->fsync = COHORT_FSYNC_NONE;
		else
			usage_error("%s: '%s' is not always, interval or none",
				    key, v);
	} else if (!strcmp(key, "fsync-interval-ms"))
		st->fsync_interval_ms = (uint32_t)parse_uint(key, v, 1, 3600000);
	else if (!strcmp(key, "threads"))
		st->threads = (unsigned)parse_uint(key, v, 0, 1024);
	else if (!strcmp(key, "token-file"))
		set_str(&st->token_file, v);
	else if (!strcmp(key, "max-frame"))
		st->max_frame = (uint32_t)parse_uint(key, v, 1024, 1u << 30);
	else if (!strcmp(key, "max-batch"))
		st->max_batch = (uint32_t)parse_uint(key, v, 1, 10000000);
	else if (!strcmp(key, "max-k"))
		st->max_k = (uint32_t)parse_uint(key, v, 1, COHORT_MAX_K);
	else if (!strcmp(key, "max-conns"))
		st->max_conns = (unsigned)parse_uint(key, v, 0, 10000000);
	else if (!strcmp(key, "idle-timeout"))
		st->idle_timeout = parse_seconds(key, v);
	else if (!strcmp(key, "auth-timeout"))
		st->auth_timeout = parse_seconds(key, v);
	else if (!strcmp(key, "metrics"))
		set_str(&st->metrics, v);
	else if (!strcmp(key, "port-file"))
		set_str(&st->port_file, v);
	else if (!strcmp(key, "snapshot-log-bytes"))
		st->snapshot_log_bytes = parse_uint(key, v, 0, UINT64_MAX);
	else
		return false;
	return true;
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
			 e[-1] == '\r'))
		*--e = 0;
	return s;
}

static void load_config(settings *st, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		usage_error("config file %s: %s", path, strerror(errno));
	char line[4096];
	int lineno = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		char *hash = strchr(line, '#');
		if (hash)
			*hash = 0;
		char *s = trim(line);
		if (!*s)
			continue;
		char where[4200];
		snprintf(where, sizeof where, "%s line %d", path, lineno);
		char *eq = strchr(s, '=');
		if (!eq)
			usage_error("%s: expected \"key = value\", got '%s'",
				    where, s);
		*eq = 0;
		char *key = trim(s), *val = trim(eq + 1);
		for (char *p = key; *p; p++)
			if (*p == '_')
				*p = '-';
		if (!strcmp(key, "config"))
			usage_error("%s: '%s' cannot be set in a config file",
				    where, key);
		if (!*val)
			usage_error("%s: '%s' has no value", where, key);
		if (!is_key(key))
			usage_error("%s: unknown key '%s'", where, key);
		config_where = where;
		apply(st, key, val);
		config_where = NULL;
	}
	fclose(f);
}

static void parse_args(settings *st, int argc, char **argv)
{
	/* the config file first, whatever its place on the line */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage_text, stdout);
			exit(0);
		}
		if (!strcmp(argv[i], "--version")) {
			printf("cohortd %s (protocol %d)\n", COHORTD_VERSION,
			       PROTO_VERSION);
			exit(0);
		}
		if (!strcmp(argv[i], "--config")) {
			if (i + 1 >= argc)
				usage_error("%s needs a value", argv[i]);
			set_str(&st->config, argv[++i]);
		} else if (!strncmp(argv[i], "--config=", 9)) {
			set_str(&st->config, argv[i] + 9);
		}
	}
	if (st->config)
		load_config(st, st->config);
	bool dir_flag = false, memory_flag = false;
	bool tok_flag = false, noauth_flag = false;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2))
			usage_error("unexpected argument '%s'", a);
		char key[64];
		const char *val = NULL;
		const char *eq = strchr(a, '=');
		size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
		if (klen >= sizeof key)
			usage_error("unknown option '%s'", a);
		memcpy(key, a + 2, klen);
		key[klen] = 0;
		if (eq)
			val = eq + 1;
		if (!strcmp(key, "config")) {
			if (!eq)
				i++;
			continue;
		}
		if (!strcmp(key, "token")) {
			usage_error("tokens are never taken from the command line "
				    "(they would show in ps): put them in a file "
				    "for --token-file");
		}
		if (!is_key(key))
			usage_error("unknown option '%s'", a);
		if (!is_switch(key) && !val) {
			if (i + 1 >= argc)
				usage_error("--%s needs a value", key);
			val = argv[++i];
		}
		if (!strcmp(key, "dir"))
			dir_flag = true;
		if (!strcmp(key, "memory"))
			memory_flag = true;
		if (!strcmp(key, "token-file"))
			tok_flag = true;
		if (!strcmp(key, "no-auth"))
			noauth_flag = true;
		if (!apply(st, key, val))
			usage_error("unknown option '%s'", a);
	}
	if (dir_flag && memory_flag)
		usage_error("--dir and --memory exclude each other");
	/* a --dir on the command line beats memory = true from the file and
	 * the other way round */
	if (dir_flag)
		st->memory = false;
	/* the same for --token-file and --no-auth */
	if (tok_flag && noauth_flag)
		usage_error("--token-file and --no-auth exclude each other");
	if (tok_flag)
		st->no_auth = false;
	if (noauth_flag) {
		free(st->token_file);
		st->token_file = NULL;
	}
	if (st->token_file && st->no_auth)
		usage_error("token-file and no-auth exclude each other (config "
			    "file %s)", st->config);
	if (!st->token_file && !st->no_auth)
		usage_error("no --token-file: cohortd will not serve without "
			    "authentication unless told --no-auth (for a "
			    "trusted network only)");
}

/* Write the port to path atomically (a poller never reads half of it). */
static int write_port_file(const char *path, int port)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "%d\n", port);
	if (fclose(f))
		return -errno;
	if (rename(tmp, path))
		return -errno;
	return 0;
}

static const char *fsync_name(cohort_fsync f)
{
	return f == COHORT_FSYNC_ALWAYS ? "always" :
	       f == COHORT_FSYNC_INTERVAL ? "interval" : "none";
}

int main(int argc, char **argv)
{
	settings st = {
		.fsync = COHORT_FSYNC_INTERVAL,
		.fsync_interval_ms = 10,
		.max_frame = PROTO_MAX_FRAME_DEFAULT,
		.max_batch = PROTO_MAX_BATCH_DEFAULT,
		.max_k = COHORT_MAX_K,
		.max_conns = 10000,
		.auth_timeout = 10,
	};
	set_str(&st.listen, "127.0.0.1:7411");
	set_str(&st.dir, "./var");
	parse_args(&st, argc, argv);

	/* before any thread exists, so that every thread inherits it; a
	 * parent shell may have left SIGINT ignored, which would discard it */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (st.port_file)
		unlink(st.port_file);   /* a stale one must not be read */

	server_log("cohortd %s starting (protocol %d, pid %d)",
		   COHORTD_VERSION, PROTO_VERSION, (int)getpid());

	char err[512];
	auth_tokens *tokens = NULL;
	if (!st.no_auth) {
		int rc = auth_load(st.token_file, &tokens, err, sizeof err);
		if (rc) {
			server_log("cannot load tokens: %s", err);
			return 1;
		}
		server_log("auth: tokens from %s", st.token_file);
	} else {
		server_log("auth: OFF (--no-auth): every client is admin");
	}

	cohort_options opts;
	cohort_options_init(&opts);
	opts.fsync = st.fsync;
	opts.fsync_interval_ms = st.fsync_interval_ms;
	opts.snapshot_log_bytes = st.snapshot_log_bytes;
	opts.no_uring = st.no_uring;
	opts.salvage = st.salvage;
	/* the stop ends with a snapshot: the next start loads it instead of
	 * replaying the whole log, and older log segments are dropped */
	opts.snapshot_on_close = true;
	cohort_db *db = NULL;
	const char *dir = st.memory ? NULL : st.dir;
	int rc = cohort_open(dir, &opts, &db);
	if (rc) {
		server_log("cannot open the database %s: %s (%s)",
			   dir ? dir : "in memory", cohort_strerror(rc),
			   cohort_errdetail());
		auth_free(tokens);
		return 1;
	}
	if (dir && st.fsync == COHORT_FSYNC_INTERVAL)
		server_log("data: %s, fsync interval (every %u ms)", dir,
			   st.fsync_interval_ms);
	else if (dir)
		server_log("data: %s, fsync %s", dir, fsync_name(st.fsync));
	else
		server_log("data: in memory only (--memory): nothing survives "
			   "a stop");
	server_log("log: %s, %s", cohort_db_io_path(db),
		   cohort_db_log_mode(db));
	const char *rec = cohort_db_recovery(db);
	server_log("recovery: %s; %zu tables", rec[0] ? rec :
		   "clean, nothing cut or lost", cohort_db_ntables(db));

	metrics *m = metrics_new();
	if (!m) {
		server_log("out of memory");
		cohort_close(db);
		auth_free(tokens);
		return 1;
	}
	conn_env env = {
		.db = db,
		.tokens = tokens,
		.metrics = m,
		.max_frame = st.max_frame,
		.max_batch = st.max_batch,
		.max_k = st.max_k,
		.out_limit = OUT_LIMIT,
		.max_subs = MAX_SUBS,
		.server_name = "cohortd " COHORTD_VERSION,
	};
	server_config cfg = {
		.listen = st.listen,
		.nthreads = st.threads,
		.max_conns = st.max_conns,
		.idle_timeout_ms = (unsigned)(st.idle_timeout * 1000 + 0.5),
		.auth_timeout_ms = (unsigned)(st.auth_timeout * 1000 + 0.5),
		.no_uring = st.no_uring,
	};
	if (st.no_auth)
		cfg.auth_timeout_ms = 0;
	server *srv = NULL;
	metrics_http *mh = NULL;
	int status = 1;
	rc = server_new(&cfg, &env, &srv, err, sizeof err);
	if (rc) {
		server_log("%s", err);
		goto out;
	}
	metrics_set_info(m, dir, server_io_path(srv));
	if (st.metrics) {
		int mport = 0;
		rc = metrics_http_start(m, db, st.metrics, &mh, &mport, err,
					sizeof err);
		if (rc) {
			server_log("metrics: %s", err);
			goto out;
		}
		server_log("metrics: http://%s/metrics (port %d)", st.metrics,
			   mport);
	}
	rc = server_start(srv);
	if (rc)
		goto out;
	server_log("listening on %s, port %d: %u threads, %s; limits: frame "
		   "%u bytes, batch %u, k %u, %u connections, auth timeout %.3g s, "
		   "idle timeout %s", st.listen, server_port(srv),
		   server_nthreads(srv), server_io_path(srv), st.max_frame,
		   st.max_batch, st.max_k, st.max_conns,
		   cfg.auth_timeout_ms / 1000.0,
		   cfg.idle_timeout_ms ? "on" : "off");
	if (st.port_file) {
		rc = write_port_file(st.port_file, server_port(srv));
		if (rc) {
			server_log("cannot write the port file %s: %s",
				   st.port_file, strerror(-rc));
			server_stop(srv);
			server_wait(srv);
			goto out;
		}
	}
	int sig = 0;
	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			break;
		server_log("SIGHUP ignored: tokens and settings are read at "
			   "start; restart cohortd to change them");
	}
	server_log("%s received: stopping (no new connections; answering "
		   "the requests in flight)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	server_stop(srv);
	rc = server_wait(srv);
	status = rc ? 1 : 0;
	server_log("connections closed; closing the database%s",
		   dir ? " (sync and snapshot)" : "");
out:
	metrics_http_stop(mh);
	server_free(srv);
	rc = cohort_close(db);
	if (rc) {
		server_log("closing the database failed: %s (%s)",
			   cohort_strerror(rc), cohort_errdetail());
		status = 1;
	}
	metrics_free(m);
	auth_free(tokens);
	server_log("stopped%s", status ? " after an error" : "");
	free(st.config);
	free(st.listen);
	free(st.dir);
	free(st.token_file);
	free(st.metrics);
	free(st.port_file);
	return status;
}
