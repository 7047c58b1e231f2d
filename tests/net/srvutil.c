/*
 * srvutil.c -- start, stop and talk to a real cohortd from a test
 * (srvutil.h). Every server runs in its own mkdtemp directory; its stderr
 * goes to a log file there, quoted in the message of any failure.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "srvutil.h"

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static const char *bin_path(void)
{
	static char path[512];
	const char *dir = getenv("COHORT_BIN");
	snprintf(path, sizeof path, "%s/cohortd", dir && *dir ? dir : "build");
	return path;
}

char *srv_log(const srv *s)
{
	FILE *f = fopen(s->log_path, "r");
	if (!f)
		return strdup("(no log)");
	char *buf = NULL;
	size_t cap = 0;
	ssize_t n = getdelim(&buf, &cap, 0, f);
	fclose(f);
	if (n < 0) {
		free(buf);
		return strdup("(empty log)");
	}
	return buf;
}

bool srv_log_has(const srv *s, const char *text)
{
	char *log = srv_log(s);
	bool has = strstr(log, text) != NULL;
	free(log);
	return has;
}

/* Fail the test with the log quoted (copied first: the assertion does
 * not return, and a leak would fail sanitizer builds). */
static char fail_log[16384];
#define srv_fail(s, ...)                                                     \
	do {                                                                 \
		char *log_ = srv_log(s);                                     \
		snprintf(fail_log, sizeof fail_log, "%s", log_);             \
		free(log_);                                                  \
		char msg_[512];                                              \
		snprintf(msg_, sizeof msg_, __VA_ARGS__);                    \
		cr_assert_fail("%s\n--- cohortd log ---\n%s", msg_,         \
			       fail_log);                                    \
	} while (0)

static pid_t spawn(srv *s, const char *const *argv)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		int fd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		int nul = open("/dev/null", O_RDWR);
		if (fd < 0 || nul < 0)
			_exit(126);
		dup2(nul, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		/* a test runner may ignore or block these; cohortd must get them */
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(argv[0], (char *const *)argv);
		dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

static void launch(srv *s)
{
	const char *argv[64];
	char threads[16];
	int n = 0;
	argv[n++] = bin_path();
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--port-file";
	argv[n++] = s->port_file;
	snprintf(threads, sizeof threads, "%u",
		 s->opts.threads ? s->opts.threads : 2);
	argv[n++] = "--threads";
	argv[n++] = threads;
	if (s->opts.memory) {
		argv[n++] = "--memory";
	} else {
		argv[n++] = "--dir";
		argv[n++] = s->data_dir;
	}
	argv[n++] = "--fsync";
	argv[n++] = s->opts.fsync ? s->opts.fsync : "interval";
	if (s->opts.no_auth) {
		argv[n++] = "--no-auth";
	} else {
		argv[n++] = "--token-file";
		argv[n++] = s->token_file;
	}
	if (s->opts.no_uring)
		argv[n++] = "--no-uring";
	if (s->opts.metrics) {
		argv[n++] = "--metrics";
		argv[n++] = "127.0.0.1:0";
	}
	for (int i = 0; i < 16 && s->opts.extra[i]; i++)
		argv[n++] = s->opts.extra[i];
	argv[n] = NULL;

	unlink(s->port_file);
	s->port = 0;
	s->metrics_port = 0;
	s->pid = spawn(s, argv);
	long long deadline = mono_ms() + 15000;
	for (;;) {
		FILE *f = fopen(s->port_file, "r");
		if (f) {
			int port = 0;
			int got = fscanf(f, "%d", &port);
			fclose(f);
			if (got == 1 && port > 0) {
				s->port = port;
				break;
			}
		}
		int st;
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			srv_fail(s, "cohortd exited during start-up (status %d)",
				 WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
		}
		if (mono_ms() > deadline) {
			srv_kill(s);
			srv_fail(s, "cohortd did not write %s within 15 s",
				 s->port_file);
		}
		sleep_ms(5);
	}
	if (s->opts.metrics) {
		/* logged before the port file is written */
		char *log = srv_log(s);
		const char *p = strstr(log, "metrics: http://");
		p = p ? strstr(p, "(port ") : NULL;
		if (p)
			s->metrics_port = atoi(p + 6);
		free(log);
		if (s->metrics_port <= 0)
			srv_fail(s, "no metrics port in the log");
	}
}

static void prepare(srv *s, const srv_opts *opts)
{
	memset(s, 0, sizeof *s);
	if (opts)
		s->opts = *opts;
	snprintf(s->dir, sizeof s->dir, "/tmp/cohort-srv-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir), "mkdtemp: %s", strerror(errno));
	snprintf(s->data_dir, sizeof s->data_dir, "%s/data", s->dir);
	snprintf(s->token_file, sizeof s->token_file, "%s/tokens", s->dir);
	snprintf(s->port_file, sizeof s->port_file, "%s/port", s->dir);
	snprintf(s->log_path, sizeof s->log_path, "%s/cohortd.log", s->dir);
	int fd = open(s->token_file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0, "%s: %s", s->token_file, strerror(errno));
	dprintf(fd, "# roles and tokens of the tests\nread %s\nwrite %s\n"
		"admin %s\n", SRV_TOKEN_READ, SRV_TOKEN_WRITE, SRV_TOKEN_ADMIN);
	close(fd);
}

void srv_start(srv *s, const srv_opts *opts)
{
	prepare(s, opts);
	launch(s);
}

void srv_restart(srv *s)
{
	cr_assert_eq(s->pid, 0, "srv_restart: the server is still running");
	launch(s);
}

static int wait_exit(pid_t pid, int timeout_ms, bool *done)
{
	long long deadline = mono_ms() + timeout_ms;
	int st = 0;
	*done = false;
	while (mono_ms() < deadline) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			*done = true;
			return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
		}
		sleep_ms(2);
	}
	return 0;
}

int srv_run(srv *s, const char *const *argv, int timeout_ms)
{
	const char *full[64];
	int n = 0;
	full[n++] = bin_path();
	for (int i = 0; argv[i] && n < 63; i++)
		full[n++] = argv[i];
	full[n] = NULL;
	pid_t pid = spawn(s, full);
	bool done;
	int status = wait_exit(pid, timeout_ms, &done);
	if (!done) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		srv_fail(s, "cohortd did not end within %d ms", timeout_ms);
	}
	return status;
}

int srv_stop(srv *s)
{
	cr_assert_neq(s->pid, 0, "srv_stop: not running");
	kill(s->pid, SIGTERM);
	bool done;
	int status = wait_exit(s->pid, 10000, &done);
	if (!done) {
		srv_kill(s);
		srv_fail(s, "cohortd did not stop within 10 s of SIGTERM");
	}
	s->pid = 0;
	return status;
}

void srv_kill(srv *s)
{
	if (!s->pid)
		return;
	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
		    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void srv_cleanup(srv *s)
{
	srv_kill(s);
	if (s->dir[0])
		nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	s->dir[0] = 0;
}

long srv_rss_kb(const srv *s)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* ---- raw client -------------------------------------------------------- */
int srv_connect(const srv *s)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)s->port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	cr_assert_eq(rc, 0, "connect to port %d: %s", s->port, strerror(errno));
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct timeval tv = { .tv_sec = 10, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

void srv_encode(proto_wbuf *w, const proto_req *r)
{
	proto_req_encode(w, r);
	cr_assert_eq(w->err, 0, "encoding opcode 0x%02x: %s", r->hdr.opcode,
		     cohort_strerror(w->err));
}

int srv_write(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read exactly len bytes; -1 on end, error or timeout. */
static int read_full(int fd, void *buf, size_t len, long long deadline)
{
	uint8_t *p = buf;
	while (len > 0) {
		if (deadline) {
			long long left = deadline - mono_ms();
			struct pollfd pf = { fd, POLLIN, 0 };
			if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
				return -1;
		}
		ssize_t n = recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int srv_read_frame(int fd, proto_hdr *h, uint8_t **body, int timeout_ms)
{
	long long deadline = timeout_ms > 0 ? mono_ms() + timeout_ms : 0;
	uint8_t hdr[PROTO_HDR_LEN];
	*body = NULL;
	if (read_full(fd, hdr, sizeof hdr, deadline))
		return -1;
	int rc = proto_hdr_decode(hdr, sizeof hdr, UINT32_MAX, h);
	cr_assert_eq(rc, PROTO_HDR_LEN, "a malformed frame header from the "
		     "server (%d)", rc);
	*body = malloc(h->body_len ? h->body_len : 1);
	cr_assert_not_null(*body);
	if (read_full(fd, *body, h->body_len, deadline)) {
		free(*body);
		*body = NULL;
		return -1;
	}
	return 0;
}

int srv_call(int fd, const proto_req *r, uint8_t **body, uint32_t *body_len)
{
	proto_wbuf w = { 0 };
	srv_encode(&w, r);
	int rc = srv_write(fd, w.buf, w.len);
	proto_wbuf_free(&w);
	cr_assert_eq(rc, 0, "send: %s", strerror(-rc));
	proto_hdr h;
	uint8_t *b;
	cr_assert_eq(srv_read_frame(fd, &h, &b, 0), 0,
		     "no response to opcode 0x%02x", r->hdr.opcode);
	cr_assert_eq(h.id, r->hdr.id, "response id %u for request %u", h.id,
		     r->hdr.id);
	cr_assert_eq(h.opcode, r->hdr.opcode);
	cr_assert(h.flags & PROTO_F_RESPONSE);
	proto_rbuf rb = { .p = b, .end = b + h.body_len };
	const char *msg;
	size_t msg_len;
	int status = proto_resp_status(&rb, &msg, &msg_len);
	if (body) {
		*body = b;
		if (body_len)
			*body_len = h.body_len;
	} else {
		free(b);
	}
	return status;
}

int srv_hello_auth(int fd, const char *token)
{
	proto_req r;
	memset(&r, 0, sizeof r);
	r.hdr.opcode = PROTO_OP_HELLO;
	r.hdr.id = 1;
	r.u.hello.version = PROTO_VERSION;
	snprintf(r.u.hello.client, sizeof r.u.hello.client, "srvutil");
	uint8_t *body;
	uint32_t len;
	int st = srv_call(fd, &r, &body, &len);
	cr_assert_eq(st, 0, "HELLO: %s", cohort_strerror(st));
	/* status, version, max_frame, max_batch, max_k, auth_required, role */
	cr_assert_geq(len, 4 + 2 + 12 + 2);
	int role = body[4 + 2 + 12 + 1];
	free(body);
	if (!token)
		return role;
	memset(&r, 0, sizeof r);
	r.hdr.opcode = PROTO_OP_AUTH;
	r.hdr.id = 2;
	r.u.auth.token = token;
	r.u.auth.token_len = (uint8_t)strlen(token);
	st = srv_call(fd, &r, &body, &len);
	cr_assert_eq(st, 0, "AUTH: %s", cohort_strerror(st));
	cr_assert_geq(len, 5);
	role = body[4];
	free(body);
	return role;
}

bool srv_closed_within(int fd, int timeout_ms)
{
	long long deadline = mono_ms() + timeout_ms;
	char buf[4096];
	for (;;) {
		long long left = deadline - mono_ms();
		if (left <= 0)
			return false;
		struct pollfd pf = { fd, POLLIN, 0 };
		int n = poll(&pf, 1, (int)left);
		if (n <= 0)
			return false;
		ssize_t r = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
}
