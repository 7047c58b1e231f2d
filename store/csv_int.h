/*
 * csv_int.h -- a small, strict CSV reader, internal to cohort (used by the
 * demo, the tests and `cohort load`).
 *
 * Input: records separated by LF or CRLF (each line may use either); fields
 * separated by one delimiter byte (';' or ',' usually); a field may be
 * enclosed in double quotes, inside which the delimiter, CR and LF are data
 * and "" stands for one quote. The first record is the header: it names the
 * columns and fixes how many fields every later record must have. A UTF-8
 * byte order mark before the header is skipped.
 *
 * Strictness: anything that is not exactly that is an error naming the line
 * and the reason, never a guess: a quote inside an unquoted field, anything
 * but a delimiter or a line end after a closing quote, a quote still open at
 * the end of the input, a CR not followed by LF outside quotes, a NUL byte,
 * a record whose field count differs from the header's (a blank line is a
 * record of one empty field, so it is an error unless the header has one
 * column). The last record may end without a line end.
 *
 * Streaming: the reader holds one record at a time. Fields are views
 * (pointer, length) into a buffer the reader reuses, grown only when a record
 * is longer than any before it: no allocation per field or per record.
 *
 * Errors: functions return 0 (or, for csv_next, 1) on success and a negative
 * COHORT_E* code on failure: COHORT_ECORRUPT for malformed input, COHORT_EIO
 * for a read error, COHORT_ELIMIT for a record over r->max_record bytes,
 * COHORT_ENOMEM, COHORT_EINVAL for bad arguments. The message is in r->err,
 * the line in r->err_line. An error is sticky: later csv_next calls return
 * it again.
 *
 * Threads: a reader is used by one thread at a time. The parse helpers are
 * pure and thread-safe; they read numbers in the "C" locale's syntax through
 * strtod, so a program that calls setlocale() with another decimal point
 * must not use csv_parse_f64.
 */
#ifndef COHORT_CSV_INT_H
#define COHORT_CSV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CSV_ERR_LEN 256
#define CSV_MAX_RECORD (64u << 20) /* bytes of one record, unquoted */

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
	                             csv_next or csv_close */
	size_t nfields;
	uint64_t line;            /* line (1-based) where the current record starts */
	uint64_t err_line;        /* line of the last error; 0 if none */
	char err[CSV_ERR_LEN];    /* message of the last error; "" if none */
	size_t max_record;        /* record size limit, CSV_MAX_RECORD after
	                             open; the caller may lower it */

	/* Private. */
	FILE *fp;
	const char *src;          /* bytes not yet parsed: src[pos..src_len) */
	size_t src_len, pos;
	char *chunk;              /* read buffer for fp */
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
	char delim;
} csv_reader;

/*
 * Start reading from fp (owned by the caller, who closes it after csv_close)
 * or from the len bytes at buf (which must outlive the reader), with the
 * given delimiter (any byte but '"', CR, LF and NUL). Reads the header.
 * Returns 0, or an error (empty input included: ECORRUPT, "no header").
 * Whatever it returns, csv_close(r) must be called.
 */
int csv_open_file(csv_reader *r, FILE *fp, char delim);
int csv_open_mem(csv_reader *r, const char *buf, size_t len, char delim);

/* Free what the reader holds (not fp). Safe to call twice. */
void csv_close(csv_reader *r);

/*
 * Read the next record into r->fields / r->nfields (always r->nheader
 * fields) and r->line. Returns 1 for a record, 0 at the end of the input,
 * or a negative error.
 */
int csv_next(csv_reader *r);

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
