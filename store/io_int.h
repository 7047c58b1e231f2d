/*
 * io_int.h -- the file I/O layer under the log and snapshots, with fault
 * injection that tests steer.
 *
 * Every write and sync the store makes, through io_uring or through
 * pwrite/fdatasync, passes its result through io_fault_filter(); a test arms
 * a fault with io_fault_arm() to make the Nth write from now short, or fail
 * it with EIO or ENOSPC, or fail the Nth sync with EIO. With nothing armed
 * the filter returns the result unchanged (one relaxed load).
 */
#ifndef COHORT_IO_INT_H
#define COHORT_IO_INT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum io_op { IO_WRITE, IO_SYNC } io_op;

typedef enum io_fault {
	IO_FAULT_NONE = 0,
	IO_FAULT_SHORT,      /* the write moves half its bytes (at least 1 less) */
	IO_FAULT_EIO,        /* the write or sync fails with EIO */
	IO_FAULT_ENOSPC      /* the write fails with ENOSPC */
} io_fault;

/* Arm one fault: the (nth+1)-th operation of kind op from now. */
void io_fault_arm(io_op op, long nth, io_fault fault);
/* Disarm everything. */
void io_fault_reset(void);
/* Operations of kind op seen since the last arm/reset. */
long io_fault_count(io_op op);

/* The result an operation of `len` bytes returns after fault injection:
 * res is what the kernel said (bytes or -errno). */
ssize_t io_fault_filter(io_op op, ssize_t res, size_t len);

/* pwrite everything or fail: retries EINTR/EAGAIN, continues short
 * writes. 0 or -errno. */
int io_pwrite_all(int fd, const void *buf, size_t len, off_t off);
/* fdatasync through the filter. 0 or -errno. */
int io_fdatasync(int fd);
/* fsync a directory (after creating, renaming or removing in it). */
int io_fsync_dir(const char *dir);

#endif
