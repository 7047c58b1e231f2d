/*
 * io.c -- see io_int.h. The fault state is a few atomics: tests arm it
 * from the thread that then drives the database; whichever thread flushes
 * the log consumes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>

#include "io_int.h"

static atomic_int armed;                 /* any fault armed */
static atomic_long countdown[2] = { -1, -1 };
static atomic_int fault_of[2];
static atomic_long seen[2];

void io_fault_arm(io_op op, long nth, io_fault fault)
{
	atomic_store(&seen[op], 0);
	atomic_store(&fault_of[op], (int)fault);
	atomic_store(&countdown[op], nth);
	atomic_store(&armed, 1);
}

void io_fault_reset(void)
{
	atomic_store(&armed, 0);
	for (int i = 0; i < 2; i++) {
		atomic_store(&countdown[i], -1);
		atomic_store(&fault_of[i], IO_FAULT_NONE);
		atomic_store(&seen[i], 0);
	}
}

long io_fault_count(io_op op)
{
	return atomic_load(&seen[op]);
}

ssize_t io_fault_filter(io_op op, ssize_t res, size_t len)
{
	if (!atomic_load_explicit(&armed, memory_order_relaxed))
		return res;
	atomic_fetch_add(&seen[op], 1);
	if (atomic_load(&countdown[op]) < 0 ||
	    atomic_fetch_sub(&countdown[op], 1) != 0)
		return res;
	switch ((io_fault)atomic_load(&fault_of[op])) {
	case IO_FAULT_SHORT:
		if (op == IO_WRITE && res > 0 && len > 1)
			return (ssize_t)(len / 2 ? len / 2 : 1);
		return res;
	case IO_FAULT_EIO:
		return -EIO;
	case IO_FAULT_ENOSPC:
		return op == IO_WRITE ? -ENOSPC : -EIO;
	default:
		return res;
	}
}

int io_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, off);
		if (n < 0)
			n = -errno;
		n = io_fault_filter(IO_WRITE, n, len);
		if (n == -EINTR || n == -EAGAIN)
			continue;
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

int io_fdatasync(int fd)
{
	int rc;
	do {
		rc = fdatasync(fd) ? -errno : 0;
	} while (rc == -EINTR);
	return (int)io_fault_filter(IO_SYNC, rc, 0);
}

int io_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}
