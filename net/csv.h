/*
 * csv.h -- the one CSV reader of cohort: a small, strict, streaming reader
 * in the client library (libcohort-client.a), used by `cohort load`
 * (net/cli.c), by cohort-run's loader of the real data (net/run_load.c)
 * and by the tests.
 *
 * Input: records separated by LF or CRLF (each line may use either); fields
 * separated by one delimiter byte (';', ',' or tab usually; csv_detect_delim
 * guesses it); a field may be enclosed in double quotes, inside which the
 * delimiter, CR and LF are data and "" stands for one quote. The first
 * record is the header: it names the columns and fixes how many fields
 * every later record must have. A UTF-8 byte order mark before the header
 * is skipped.
 *
 * Strictness: anything that is not exactly that is an error naming the line
 * and the reason, never a guess: a quote inside an unquoted field, anything
 * but a delimiter or a line end after a closing quote, a quote still open at
 * the end of the input, a CR not followed by LF outside quotes, a NUL byte,
 * a record whose field count differs from the header's (a blank line is a
 * record of one empty field, so it is an error unless the header has one
 * column). The last record may end without a line end. Two flags relax the
 * record rules for a caller that checks them itself: CSV_SKIP_BLANK (blank
 * lines are not records) and CSV_ANY_WIDTH (no field count check).
 *
 * Streaming: the reader holds one record at a time. Fields are views
 * (pointer, length) into a buffer the reader reuses, grown only when a record
 * is longer than any before it: no allocation per field or per record. The
 * input is a memory buffer, a FILE or a file descriptor, read in 64 KiB
 * windows; csv_offset says how far it got (a progress bar's byte count).
 *
 * Errors: functions return 0 (or, for csv_next, 1) on success and a negative
 * COHORT_E* code on failure: COHORT_ECORRUPT for malformed input, COHORT_EIO
 * for a read error, COHORT_ELIMIT for a record over r->max_record bytes,
 * COHORT_ENOMEM, COHORT_EINVAL for bad arguments. The message is in r->err
 * ("line N: reason"; csv_why gives the reason alone), the line in
 * r->err_line. An error is sticky: later csv_next calls return it again,
 * except that csv_skip_bad lets a caller go on past a malformed record.
 *
 * Memory: through opts->alloc_cb when given (tests inject failures with
 * it), else the C library's realloc and free.
 *
 * Threads: a reader is used by one thread at a time. The parse helpers are
 * pure and thread-safe; they read numbers in the "C" locale's syntax through
 * strtod, so a program that calls setlocale() with another decimal point
 * must not use csv_parse_f64.
 */
#ifndef COHORT_CSV_H
#define COHORT_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CSV_ERR_LEN 256
#define CSV_MAX_RECORD (64u << 20) /* bytes of one record, unquoted */

/* csv_opts.flags */
#define CSV_SKIP_BLANK 1u  /* an empty line is no record (it still counts
                              as a line); the header is never skipped */
#define CSV_ANY_WIDTH  2u  /* a record may have any number of fields: the
                              caller compares nfields with nheader */

/*
 * Allocator: realloc(ptr, size) for size > 0 (ptr may be NULL; NULL when
 * out of memory), free(ptr) for size 0 (returns NULL).
 */
typedef void *(*csv_alloc_cb)(void *ptr, size_t size);

typedef struct csv_opts {
	char delim;             /* the delimiter; 0: csv_detect_delim on the
	                           first line of the input */
	unsigned flags;         /* CSV_SKIP_BLANK | CSV_ANY_WIDTH */
	csv_alloc_cb alloc_cb;  /* NULL: realloc and free */
} csv_opts;

/* One field: len bytes at ptr, followed by a NUL (fields hold no NUL). */
typedef struct csv_field {
	const char *ptr;
	size_t len;
} csv_field;

typedef struct csv_reader {
	/* Read-only for the caller. */
	const csv_field *header;  /* nheader column names, valid until csv_close */
	size_t nheader;
	const csv_field *fields;  /* the current record: valid until the next
	                             csv_next, csv_rewind or csv_close. The
	                             fields lie in order in one block, each
	                             followed by its NUL: fields[0].ptr up to
	                             fields[nfields-1].ptr + len + 1 */
	size_t nfields;
	uint64_t line;            /* line (1-based) where the current record
	                             (after csv_open*: the header) starts */
	uint64_t err_line;        /* line of the last error; 0 if none */
	char err[CSV_ERR_LEN];    /* message of the last error; "" if none */
	size_t max_record;        /* record size limit, CSV_MAX_RECORD after
	                             open; the caller may lower it */
	char delim;               /* the delimiter, given or detected */

	/* Private. */
	FILE *fp;                 /* input: fp, fd (>= 0) or the bytes at src */
	int fd;
	const char *src;          /* bytes not yet parsed: src[pos..src_len) */
	size_t src_len, pos;
	char *chunk;              /* read buffer of fp or fd */
	size_t chunk_cap;
	uint64_t base;            /* input offset of src[0] */
	int64_t start_pos;        /* fp's or fd's file offset at open; -1: it
	                             cannot seek */
	bool keep;                /* keep the bytes read from mark on */
	uint64_t mark_off, mark_line;
	bool marked;
	size_t err_why;           /* offset of the reason in err */
	bool skip_line;           /* csv_skip_bad: drop the rest of the line */
	char *rec;                /* unescaped fields of the record, NUL after each */
	size_t rec_len, rec_cap;
	csv_field *fbuf;          /* field views (fields points here) */
	size_t *foff;             /* field offsets in rec while a record is built */
	size_t fcap;
	char *header_buf;         /* a copy of the header's bytes */
	csv_field *header_fields;
	uint64_t cur_line;        /* line of the next unread byte */
	int status;               /* sticky error, 0 if none */
	bool at_eof;
	unsigned flags;
	csv_alloc_cb alloc_cb;
} csv_reader;

/*
 * Start reading, and read the header:
 *   csv_open_mem   the len bytes at buf (which must outlive the reader);
 *   csv_open_file  fp, from where it is (the caller closes it after
 *                  csv_close, and does not read it meanwhile);
 *   csv_open_fd    the file descriptor fd, likewise (a pipe, a socket or
 *                  a file).
 * The plain forms take the delimiter (any byte but '"', CR, LF and NUL);
 * csv_open_opts takes options (opts may be NULL: ',' and no flags) and one
 * input: buf/len when fp is NULL and fd < 0, else fp, else fd.
 * Returns 0, or an error (empty input included: ECORRUPT, "no header").
 * Whatever it returns, csv_close(r) must be called.
 */
int csv_open_mem(csv_reader *r, const char *buf, size_t len, char delim);
int csv_open_file(csv_reader *r, FILE *fp, char delim);
int csv_open_fd(csv_reader *r, int fd, char delim);
int csv_open_opts(csv_reader *r, const csv_opts *opts, FILE *fp, int fd,
		  const char *buf, size_t len);

/* Free what the reader holds (not fp or fd). Safe to call twice. */
void csv_close(csv_reader *r);

/*
 * Read the next record into r->fields / r->nfields (r->nheader fields,
 * unless CSV_ANY_WIDTH) and r->line. Returns 1 for a record, 0 at the end
 * of the input, or a negative error.
 */
int csv_next(csv_reader *r);

/*
 * After csv_next returned COHORT_ECORRUPT (a malformed record, not the
 * header): drop the error so that reading goes on with the line after the
 * one where the error was found (a record of the wrong width was read
 * whole: reading goes on after it). Returns 0, or the sticky error when it
 * is another kind (read error, no memory, a record over the limit).
 */
int csv_skip_bad(csv_reader *r);

/*
 * csv_mark remembers the place of the next record; csv_rewind goes back to
 * it, so that the records after it can be read twice (type inference
 * before a load). An input that cannot seek (a pipe) keeps every byte read
 * after the mark in memory until csv_rewind: csv_kept says how many, for
 * the caller to stop reading at its limit. csv_rewind clears a sticky
 * ECORRUPT error. Both return 0 or an error (EINVAL: no mark; EIO: the
 * seek failed; ENOMEM).
 */
int csv_mark(csv_reader *r);
int csv_rewind(csv_reader *r);
uint64_t csv_kept(const csv_reader *r);

/* Bytes of the input consumed so far, the byte order mark included. */
uint64_t csv_offset(const csv_reader *r);

/* The reason of the last error, without the "line N: " of r->err. */
const char *csv_why(const csv_reader *r);

/*
 * The delimiter of the first line of the len bytes at buf: the most
 * frequent of ';', tab and ',' outside quotes (',' when there is none;
 * ';' wins a tie with tab, ',' wins every other tie).
 */
char csv_detect_delim(const char *buf, size_t len);

/* Index of the header column named name, or COHORT_ENOCOLUMN. */
int csv_column(const csv_reader *r, const char *name);

/*
 * Parse the len bytes at p as a whole: an optional sign then decimal digits
 * (no spaces, no empty string). COHORT_EINVAL if it is not one, COHORT_ERANGE
 * if it is outside [min, max]. *out is set only on success. err (may be NULL)
 * gets a message of at most err_len bytes.
 */
int csv_parse_i64(const char *p, size_t len, int64_t min, int64_t max,
		  int64_t *out, char *err, size_t err_len);

/*
 * Parse the len bytes at p as a whole as a finite decimal number:
 * [sign] digits [. digits] [(e|E) [sign] digits], at least one digit before
 * or after the point (no spaces, hex, inf or nan). COHORT_EINVAL if it is not
 * one, COHORT_ERANGE if its magnitude overflows a double (a value too small
 * for a double rounds to the nearest one, possibly 0).
 */
int csv_parse_f64(const char *p, size_t len, double *out, char *err,
		  size_t err_len);

/*
 * Field `col` of the current record parsed as above, with the line and the
 * column name in r->err on failure (the reader stays usable).
 */
int csv_get_i64(csv_reader *r, size_t col, int64_t min, int64_t max,
		int64_t *out);
int csv_get_f64(csv_reader *r, size_t col, double *out);

#endif
