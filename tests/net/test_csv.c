/*
 * test_csv.c -- the CSV reader (net/csv.h): the accepted syntax (quotes, ""
 * escapes, CRLF, empty fields, the header), streaming from a FILE or a file
 * descriptor across read-buffer boundaries, every malformed input as an
 * error with its line number, going on past a bad record (csv_skip_bad),
 * the relaxed modes (blank lines, any width), reading twice (csv_mark,
 * csv_rewind) from memory, a file and a pipe, the byte count, delimiter
 * detection, allocation failures, and the number parsers.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "cohort.h"
#include "csv.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static int open_str(csv_reader *r, const char *s)
{
	return csv_open_mem(r, s, strlen(s), ';');
}

static void expect_field(const csv_reader *r, size_t i, const char *want)
{
	cr_assert_lt(i, r->nfields, "field %zu of %zu", i, r->nfields);
	size_t len = strlen(want);
	cr_assert_eq(r->fields[i].len, len, "field %zu: len %zu, want %zu ('%s')",
		     i, r->fields[i].len, len, want);
	cr_assert(memcmp(r->fields[i].ptr, want, len) == 0,
		  "field %zu: '%.*s', want '%s'", i, (int)r->fields[i].len,
		  r->fields[i].ptr, want);
	cr_assert_eq(r->fields[i].ptr[len], '\0', "field %zu not terminated", i);
}

/* Read records until an error; expect `code` at line `line` with `reason`
 * in the message, after `nok` good records. */
static void expect_error(const char *input, char delim, size_t nok, int code,
			 uint64_t line, const char *reason)
{
	csv_reader r;
	int rc = csv_open_mem(&r, input, strlen(input), delim);
	size_t n = 0;
	while (rc == 0 || rc == 1) {
		rc = csv_next(&r);
		if (rc == 1)
			n++;
		cr_assert_neq(rc, 0, "reached the end without an error");
	}
	cr_assert_eq(n, nok, "%zu good records before the error, want %zu", n,
		     nok);
	cr_assert_eq(rc, code, "code %d (%s), want %d: %s", rc,
		     cohort_strerror(rc), code, r.err);
	cr_assert_eq(r.err_line, line, "error at line %llu, want %llu: %s",
		     (unsigned long long)r.err_line, (unsigned long long)line,
		     r.err);
	char prefix[32];
	snprintf(prefix, sizeof prefix, "line %llu: ", (unsigned long long)line);
	cr_assert(strncmp(r.err, prefix, strlen(prefix)) == 0,
		  "message '%s' does not start with '%s'", r.err, prefix);
	cr_assert(strstr(r.err, reason), "message '%s' lacks '%s'", r.err,
		  reason);
	/* Sticky: the reader does not go on past an error. */
	cr_assert_eq(csv_next(&r), code);
	csv_close(&r);
}

Test(csv, reads_header_and_records)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "age;job\n58;management\n44;technician\n"), 0);
	cr_assert_eq(r.nheader, 2);
	cr_assert_eq(r.header[0].len, 3);
	cr_assert_str_eq(r.header[0].ptr, "age");
	cr_assert_str_eq(r.header[1].ptr, "job");
	cr_assert_eq(csv_column(&r, "job"), 1);
	cr_assert_eq(csv_column(&r, "jo"), COHORT_ENOCOLUMN);

	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 2);
	expect_field(&r, 0, "58");
	expect_field(&r, 1, "management");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 3);
	expect_field(&r, 1, "technician");
	cr_assert_eq(csv_next(&r), 0);
	cr_assert_eq(csv_next(&r), 0, "the end stays the end");
	/* The header survives the reuse of the record buffer. */
	cr_assert_str_eq(r.header[1].ptr, "job");
	csv_close(&r);
	csv_close(&r);  /* twice is harmless */
}

Test(csv, quoted_fields_hold_delimiters_and_line_ends)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "\"a;b\";\"c\"\n\"x;y\";\"l1\nl2\r\nl3\"\n"
				  "\"z\";w\n"), 0);
	cr_assert_str_eq(r.header[0].ptr, "a;b");
	cr_assert_str_eq(r.header[1].ptr, "c");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 2);
	expect_field(&r, 0, "x;y");
	expect_field(&r, 1, "l1\nl2\r\nl3");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 5, "line numbers count the quoted line ends");
	expect_field(&r, 0, "z");
	expect_field(&r, 1, "w");
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);
}

Test(csv, doubled_quote_is_one_quote)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b;c;d\n\"he said \"\"hi\"\"\";\"\"\"\"\"\";"
				  "\"\";\"\"\"\"\n"), 0);
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 0, "he said \"hi\"");
	expect_field(&r, 1, "\"\"");
	expect_field(&r, 2, "");
	expect_field(&r, 3, "\"");
	csv_close(&r);
}

Test(csv, crlf_and_lf_line_ends_mix)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b\r\n1;2\r\n3;\"4\"\n5;6\r\n"), 0);
	cr_assert_str_eq(r.header[1].ptr, "b", "CR is not part of the field");
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 1, "2");
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 1, "4");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 4);
	expect_field(&r, 0, "5");
	expect_field(&r, 1, "6");
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);
}

Test(csv, empty_fields)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b;c\n;;\n\"\";x;\n;\"\";\"\"\n"), 0);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.nfields, 3);
	for (size_t i = 0; i < 3; i++)
		expect_field(&r, i, "");
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 0, "");
	expect_field(&r, 1, "x");
	expect_field(&r, 2, "");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.nfields, 3);
	expect_field(&r, 2, "");
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);
}

Test(csv, last_record_needs_no_line_end)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b\n1;\"2\""), 0);
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 1, "2");
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);

	cr_assert_eq(open_str(&r, "a;b\n1;"), 0);
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 1, "");
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);
}

Test(csv, header_only_has_no_records)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b\r\n"), 0);
	cr_assert_eq(r.nheader, 2);
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);
}

Test(csv, comma_delimiter_makes_semicolon_data)
{
	csv_reader r;
	const char *s = "a,b\n1;2,\"3,4\"\n";
	cr_assert_eq(csv_open_mem(&r, s, strlen(s), ','), 0);
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 0, "1;2");
	expect_field(&r, 1, "3,4");
	csv_close(&r);
}

Test(csv, skips_utf8_byte_order_mark)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "\xEF\xBB\xBF" "id;x\n1;2\n"), 0);
	cr_assert_str_eq(r.header[0].ptr, "id");
	cr_assert_eq(csv_column(&r, "id"), 0);
	csv_close(&r);
}

Test(csv, single_column_blank_line_is_an_empty_field)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a\n\nx\n"), 0);
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 0, "");
	cr_assert_eq(csv_next(&r), 1);
	expect_field(&r, 0, "x");
	cr_assert_eq(r.line, 3);
	csv_close(&r);
}

Test(csv, fields_are_views_into_one_reused_buffer)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b\n1;2\n3;4\n"), 0);
	cr_assert_eq(csv_next(&r), 1);
	const char *first = r.fields[0].ptr;
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.fields[0].ptr, first,
		     "a record no longer than the last reuses its buffer");
	csv_close(&r);
}

/* Build a file of nrec records with quotes, escapes and CRLF whose bytes
 * cross the reader's 64 KiB read windows at every kind of position. */
static char *make_big(size_t nrec, size_t *len)
{
	size_t cap = 64 + nrec * 64;
	char *s = malloc(cap);
	cr_assert_not_null(s);
	size_t n = (size_t)snprintf(s, cap, "id;name;note\r\n");
	for (size_t i = 0; i < nrec; i++)
		n += (size_t)snprintf(s + n, cap - n,
				      "%zu;\"n\"\"%zu\";\"l;%zu\r\nx\"\r\n", i,
				      i * 7, i % 13);
	*len = n;
	return s;
}

static void check_big(csv_reader *r, size_t nrec)
{
	char want[64];
	for (size_t i = 0; i < nrec; i++) {
		cr_assert_eq(csv_next(r), 1, "record %zu: %s", i, r->err);
		cr_assert_eq(r->line, 2 + 2 * i);
		snprintf(want, sizeof want, "%zu", i);
		expect_field(r, 0, want);
		snprintf(want, sizeof want, "n\"%zu", i * 7);
		expect_field(r, 1, want);
		snprintf(want, sizeof want, "l;%zu\r\nx", i % 13);
		expect_field(r, 2, want);
	}
	cr_assert_eq(csv_next(r), 0);
}

Test(csv, streams_from_a_file_across_read_windows)
{
	/* Shift the content by one byte per pass so that every byte of a
	 * record (quote, CR, LF, escape) falls on a window edge in some pass. */
	size_t nrec = 6000, len;
	char *s = make_big(nrec, &len);
	for (size_t pad = 0; pad < 30; pad++) {
		FILE *fp = tmpfile();
		cr_assert_not_null(fp);
		/* Padding goes into the header's first column name. */
		for (size_t i = 0; i < pad; i++)
			fputc('p', fp);
		cr_assert_eq(fwrite(s, 1, len, fp), len);
		rewind(fp);
		csv_reader r;
		cr_assert_eq(csv_open_file(&r, fp, ';'), 0, "%s", r.err);
		cr_assert_eq(r.nheader, 3);
		cr_assert_eq(r.header[0].len, pad + 2);
		check_big(&r, nrec);
		csv_close(&r);
		fclose(fp);
	}
	free(s);
}

Test(csv, memory_and_file_give_the_same_records)
{
	size_t nrec = 3000, len;
	char *s = make_big(nrec, &len);
	csv_reader r;
	cr_assert_eq(csv_open_mem(&r, s, len, ';'), 0);
	check_big(&r, nrec);
	csv_close(&r);
	free(s);
}

/* ---- errors ------------------------------------------------------------ */

Test(csv, unterminated_quote_names_the_line_it_opened)
{
	expect_error("a;b\n1;2\n3;\"open\nstill\nopen\n", ';', 1,
		     COHORT_ECORRUPT, 3,
		     "field 2: the quote opened on this line is never closed");
}

Test(csv, unterminated_quote_in_file)
{
	FILE *fp = tmpfile();
	cr_assert_not_null(fp);
	fputs("a;b\r\n1;2\r\n\"x;y\r\n", fp);
	rewind(fp);
	csv_reader r;
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_next(&r), COHORT_ECORRUPT);
	cr_assert_eq(r.err_line, 3, "%s", r.err);
	cr_assert(strstr(r.err, "never closed"), "%s", r.err);
	csv_close(&r);
	fclose(fp);
}

Test(csv, stray_quote_inside_unquoted_field)
{
	expect_error("a;b\n1;2\n3;4\n5;ab\"c\n", ';', 2, COHORT_ECORRUPT, 4,
		     "stray quote in unquoted field 2");
}

Test(csv, stray_character_after_closing_quote)
{
	expect_error("a;b\n\"x\"y;2\n", ';', 0, COHORT_ECORRUPT, 2,
		     "field 1: text after its closing quote");
	expect_error("a;b\n1;2\n1;\"x\" \n", ';', 1, COHORT_ECORRUPT, 3,
		     "field 2: text after its closing quote");
}

Test(csv, error_line_counts_quoted_line_ends)
{
	/* The record starts at line 2; the stray quote is on line 4. */
	expect_error("a;b\n\"x\ny\nz\";w\"v\n", ';', 0, COHORT_ECORRUPT, 4,
		     "stray quote");
}

Test(csv, too_few_fields)
{
	expect_error("a;b;c\n1;2;3\r\n4;5\r\n", ';', 1, COHORT_ECORRUPT, 3,
		     "2 fields, the header has 3");
}

Test(csv, too_many_fields)
{
	expect_error("a;b\n1;2\n3;4\n5;6;7\n", ';', 2, COHORT_ECORRUPT, 4,
		     "3 fields, the header has 2");
}

Test(csv, blank_line_is_a_short_record)
{
	expect_error("a;b\n1;2\n\n3;4\n", ';', 1, COHORT_ECORRUPT, 3,
		     "1 field, the header has 2");
	expect_error("a;b\r\n1;2\r\n\r\n", ';', 1, COHORT_ECORRUPT, 3,
		     "1 field, the header has 2");
}

Test(csv, bare_cr_outside_quotes)
{
	expect_error("a;b\n1;2\r3;4\n", ';', 0, COHORT_ECORRUPT, 2,
		     "CR not followed by LF");
	expect_error("a;b\n1;2\r", ';', 0, COHORT_ECORRUPT, 2,
		     "CR not followed by LF");
}

Test(csv, nul_byte)
{
	static const char s[] = "a;b\n1;2\n3;4\0x\n";
	csv_reader r;
	cr_assert_eq(csv_open_mem(&r, s, sizeof s - 1, ';'), 0);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_next(&r), COHORT_ECORRUPT);
	cr_assert_eq(r.err_line, 3);
	cr_assert(strstr(r.err, "NUL byte"), "%s", r.err);
	csv_close(&r);
}

Test(csv, malformed_header)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;\"b\nc"), COHORT_ECORRUPT);
	cr_assert_eq(r.err_line, 1);
	cr_assert(strstr(r.err, "never closed"), "%s", r.err);
	cr_assert_eq(csv_next(&r), COHORT_ECORRUPT, "sticky after open");
	csv_close(&r);
}

Test(csv, empty_input_has_no_header)
{
	csv_reader r;
	cr_assert_eq(csv_open_mem(&r, "", 0, ';'), COHORT_ECORRUPT);
	cr_assert_eq(r.err_line, 1);
	cr_assert(strstr(r.err, "no header"), "%s", r.err);
	csv_close(&r);

	FILE *fp = tmpfile();
	cr_assert_not_null(fp);
	cr_assert_eq(csv_open_file(&r, fp, ';'), COHORT_ECORRUPT);
	cr_assert(strstr(r.err, "no header"), "%s", r.err);
	csv_close(&r);
	fclose(fp);
}

Test(csv, truncated_byte_order_mark)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "\xEF\xBB" "a\n"), COHORT_ECORRUPT);
	cr_assert(strstr(r.err, "byte order mark"), "%s", r.err);
	csv_close(&r);
}

Test(csv, bad_arguments)
{
	csv_reader r;
	cr_assert_eq(csv_open_mem(&r, "a\n", 2, '"'), COHORT_EINVAL);
	cr_assert(strstr(r.err, "delimiter"), "%s", r.err);
	csv_close(&r);
	cr_assert_eq(csv_open_mem(&r, "a\n", 2, '\n'), COHORT_EINVAL);
	csv_close(&r);
	cr_assert_eq(csv_open_mem(&r, NULL, 3, ';'), COHORT_EINVAL);
	csv_close(&r);
	cr_assert_eq(csv_open_file(&r, NULL, ';'), COHORT_EINVAL);
	csv_close(&r);
}

Test(csv, closed_reader_reads_nothing)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a\n1\n"), 0);
	csv_close(&r);
	cr_assert_eq(csv_next(&r), COHORT_EINVAL);
}

Test(csv, record_over_the_limit)
{
	csv_reader r;
	char s[400];
	memset(s, 'x', sizeof s);
	memcpy(s, "a;b\n1;2\n\"", 9);
	s[sizeof s - 1] = '\0';  /* an unterminated quote of ~390 bytes */
	cr_assert_eq(open_str(&r, s), 0);
	r.max_record = 100;
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_next(&r), COHORT_ELIMIT);
	cr_assert_eq(r.err_line, 3, "%s", r.err);
	cr_assert(strstr(r.err, "longer than 100 bytes"), "%s", r.err);
	csv_close(&r);
}

Test(csv, read_error_is_eio)
{
	/* A stream opened for writing only fails to read. */
	FILE *fp = fopen("/dev/null", "w");
	cr_assert_not_null(fp);
	csv_reader r;
	cr_assert_eq(csv_open_file(&r, fp, ';'), COHORT_EIO);
	cr_assert(strstr(r.err, "read error"), "%s", r.err);
	csv_close(&r);
	fclose(fp);
}

/* The reader's allocator in these tests: the library's wrapper, whose
 * alloc_fail_after injects failures. */
static void *fault_alloc(void *p, size_t n)
{
	if (n == 0) {
		cfree(p);
		return NULL;
	}
	return crealloc(p, n);
}

Test(csv, every_allocation_failure_is_enomem)
{
	/* Fail the 1st, 2nd, ... allocation until a whole read succeeds. */
	size_t len;
	char *s = make_big(200, &len);
	int ok = 0;
	for (long n = 0; n < 200 && !ok; n++) {
		FILE *fp = tmpfile();
		cr_assert_not_null(fp);
		cr_assert_eq(fwrite(s, 1, len, fp), len);
		rewind(fp);
		csv_reader r;
		csv_opts o = { .delim = ';', .alloc_cb = fault_alloc };
		alloc_fail_after(n);
		int rc = csv_open_opts(&r, &o, fp, -1, NULL, 0);
		if (rc == 0)
			while ((rc = csv_next(&r)) == 1)
				;
		alloc_fail_after(-1);
		if (rc == 0) {
			ok = 1;
		} else {
			cr_assert_eq(rc, COHORT_ENOMEM, "n=%ld: %d %s", n, rc,
				     r.err);
			cr_assert(strstr(r.err, "out of memory"), "%s", r.err);
		}
		csv_close(&r);
		fclose(fp);
	}
	cr_assert(ok, "never succeeded");
	free(s);
}

/* ---- going on past errors, relaxed modes -------------------------------- */

Test(csv, skip_bad_goes_on_with_the_next_line)
{
	/* Each kind of malformed record, then a good one after it. */
	const char *s = "a;b\n"
			"1;x\"y\n"          /* 2: stray quote */
			"2;ok\n"
			"\"q\"z;3\n"        /* 4: text after the closing quote */
			"3;ok\n"
			"4;5;6\n"           /* 6: three fields */
			"5;ok\n"
			"6;a\rb\n"          /* 8: a bare CR */
			"7;ok\n"
			"8;\"open\n";       /* 10: never closed */
	static const struct { uint64_t line; const char *why; } bad[] = {
		{ 2, "stray quote in unquoted field 2" },
		{ 4, "field 1: text after its closing quote (a quote inside a "
		     "quoted field is written \"\")" },
		{ 6, "3 fields, the header has 2" },
		{ 8, "CR not followed by LF" },
		{ 10, "field 2: the quote opened on this line is never closed" },
	};
	csv_reader r;
	cr_assert_eq(open_str(&r, s), 0);
	for (size_t i = 0; i < 5; i++) {
		cr_assert_eq(csv_next(&r), COHORT_ECORRUPT, "bad record %zu", i);
		cr_assert_eq(r.err_line, bad[i].line, "%s", r.err);
		cr_assert_str_eq(csv_why(&r), bad[i].why);
		cr_assert_eq(csv_next(&r), COHORT_ECORRUPT, "still sticky");
		cr_assert_eq(csv_skip_bad(&r), 0);
		if (i == 4)
			break;
		cr_assert_eq(csv_next(&r), 1, "after %zu: %s", i, r.err);
		cr_assert_eq(r.line, bad[i].line + 1);
		expect_field(&r, 1, "ok");
	}
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);
}

Test(csv, skip_bad_does_not_go_past_other_errors)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;\"b\n"), COHORT_ECORRUPT);
	cr_assert_eq(csv_skip_bad(&r), COHORT_ECORRUPT, "not past the header");
	csv_close(&r);

	char s[300];
	memset(s, 'x', sizeof s);
	memcpy(s, "a;b\n1;", 6);
	strcpy(s + sizeof s - 8, ";2\n3;4\n");
	cr_assert_eq(open_str(&r, s), 0);
	r.max_record = 100;
	cr_assert_eq(csv_next(&r), COHORT_ELIMIT);
	cr_assert_eq(csv_skip_bad(&r), COHORT_ELIMIT);
	cr_assert_eq(csv_next(&r), COHORT_ELIMIT);
	csv_close(&r);
}

Test(csv, skip_blank_and_any_width)
{
	const char *s = "a;b\n1;2\n\n\r\n3\n\"\";4\n\n5;6;7\n";
	csv_opts o = { .delim = ';', .flags = CSV_SKIP_BLANK | CSV_ANY_WIDTH };
	csv_reader r;
	cr_assert_eq(csv_open_opts(&r, &o, NULL, -1, s, strlen(s)), 0);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 2);
	cr_assert_eq(csv_next(&r), 1, "blank lines 3 and 4 are skipped");
	cr_assert_eq(r.line, 5);
	cr_assert_eq(r.nfields, 1);
	expect_field(&r, 0, "3");
	cr_assert_eq(csv_next(&r), 1, "a quoted empty field is no blank line");
	cr_assert_eq(r.line, 6);
	expect_field(&r, 0, "");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 8);
	cr_assert_eq(r.nfields, 3);
	expect_field(&r, 2, "7");
	cr_assert_eq(csv_next(&r), 0);
	csv_close(&r);

	/* Blank lines skipped, the width still checked. */
	o.flags = CSV_SKIP_BLANK;
	cr_assert_eq(csv_open_opts(&r, &o, NULL, -1, s, strlen(s)), 0);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_next(&r), COHORT_ECORRUPT);
	cr_assert_eq(r.err_line, 5);
	csv_close(&r);
}

Test(csv, fields_of_a_record_are_one_block)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "a;b;c\nxy;\"z\"\"\";\n"), 0);
	cr_assert_eq(csv_next(&r), 1);
	const char *first = r.fields[0].ptr;
	cr_assert_eq(r.fields[1].ptr, first + 3);
	cr_assert_eq(r.fields[2].ptr, first + 6);
	cr_assert_eq(r.fields[2].ptr[0], '\0');
	csv_close(&r);
}

/* ---- delimiter, offset, file descriptors, reading twice --------------- */

Test(csv, detects_the_delimiter_of_the_first_line)
{
	cr_assert_eq(csv_detect_delim("a;b;c\n1,2,3,4,5\n", 16), ';');
	cr_assert_eq(csv_detect_delim("\"x;y;z\",b\n", 10), ',',
		     "quoted separators do not count");
	cr_assert_eq(csv_detect_delim("a\tb\tc\n", 6), '\t');
	cr_assert_eq(csv_detect_delim("a;b\tc\n", 6), ';', "; wins a tie");
	cr_assert_eq(csv_detect_delim("abc\n", 4), ',', "none: ','");
	cr_assert_eq(csv_detect_delim("", 0), ',');

	csv_opts o = { .delim = 0 };
	csv_reader r;
	const char *s = "\xEF\xBB\xBF" "id\tn\n1\t2\n";
	cr_assert_eq(csv_open_opts(&r, &o, NULL, -1, s, strlen(s)), 0);
	cr_assert_eq(r.delim, '\t');
	cr_assert_eq(r.nheader, 2);
	cr_assert_str_eq(r.header[0].ptr, "id");
	csv_close(&r);
}

Test(csv, offset_counts_the_bytes_consumed)
{
	const char *s = "\xEF\xBB\xBF" "a;b\r\n1;\"x\ny\"\n2;3";
	csv_reader r;
	cr_assert_eq(open_str(&r, s), 0);
	cr_assert_eq(csv_offset(&r), 8, "BOM and header");
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_offset(&r), 16);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_offset(&r), strlen(s));
	csv_close(&r);
}

Test(csv, reads_a_file_descriptor)
{
	size_t nrec = 6000, len;
	char *s = make_big(nrec, &len);
	FILE *fp = tmpfile();
	cr_assert_not_null(fp);
	cr_assert_eq(fwrite(s, 1, len, fp), len);
	cr_assert_eq(fflush(fp), 0);
	int fd = dup(fileno(fp));
	cr_assert_geq(fd, 0);
	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	csv_reader r;
	cr_assert_eq(csv_open_fd(&r, fd, ';'), 0, "%s", r.err);
	check_big(&r, nrec);
	cr_assert_eq(csv_offset(&r), len);
	csv_close(&r);
	close(fd);
	fclose(fp);
	free(s);

	cr_assert_eq(csv_open_fd(&r, -1, ';'), COHORT_EINVAL);
	csv_close(&r);
	/* A read error names its cause. */
	fd = open("/", O_RDONLY | O_DIRECTORY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(csv_open_fd(&r, fd, ';'), COHORT_EIO);
	cr_assert(strstr(r.err, "read error: "), "%s", r.err);
	csv_close(&r);
	close(fd);
}

/* Read every record after the mark, go back, read them again: the same. */
static void read_twice(csv_reader *r, size_t nrec)
{
	cr_assert_eq(csv_mark(r), 0, "%s", r->err);
	uint64_t off = csv_offset(r);
	for (size_t i = 0; i < nrec / 2; i++)
		cr_assert_eq(csv_next(r), 1, "%s", r->err);
	cr_assert_eq(csv_rewind(r), 0, "%s", r->err);
	cr_assert_eq(csv_offset(r), off);
	check_big(r, nrec);
	cr_assert_eq(csv_rewind(r), 0, "%s", r->err);
	check_big(r, nrec);
}

Test(csv, rewinds_to_the_mark_in_memory_and_files)
{
	size_t nrec = 4000, len;
	char *s = make_big(nrec, &len);
	csv_reader r;
	cr_assert_eq(csv_open_mem(&r, s, len, ';'), 0);
	cr_assert_eq(csv_kept(&r), 0);
	read_twice(&r, nrec);
	cr_assert_eq(csv_kept(&r), 0, "memory keeps nothing");
	csv_close(&r);

	FILE *fp = tmpfile();
	cr_assert_not_null(fp);
	cr_assert_eq(fwrite(s, 1, len, fp), len);
	rewind(fp);
	cr_assert_eq(csv_open_file(&r, fp, ';'), 0);
	read_twice(&r, nrec);
	cr_assert_eq(csv_kept(&r), 0, "a file is read again by seeking");
	csv_close(&r);
	fclose(fp);

	cr_assert_eq(csv_open_mem(&r, s, len, ';'), 0);
	cr_assert_eq(csv_rewind(&r), COHORT_EINVAL, "no mark");
	csv_close(&r);
	free(s);
}

Test(csv, rewind_clears_a_bad_record)
{
	const char *s = "a;b\n1;2\n3;x\"\n4;5\n";
	csv_reader r;
	cr_assert_eq(open_str(&r, s), 0);
	cr_assert_eq(csv_mark(&r), 0);
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(csv_next(&r), COHORT_ECORRUPT);
	cr_assert_eq(csv_rewind(&r), 0);
	cr_assert_eq(r.err[0], '\0');
	cr_assert_eq(csv_next(&r), 1);
	cr_assert_eq(r.line, 2);
	expect_field(&r, 1, "2");
	csv_close(&r);
}

Test(csv, a_pipe_is_kept_in_memory_to_read_again)
{
	size_t nrec = 4000, len;
	char *s = make_big(nrec, &len);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		size_t off = 0;
		while (off < len) {
			/* Small writes: the reader sees many short reads. */
			size_t n = len - off < 1000 ? len - off : 1000;
			ssize_t w = write(p[1], s + off, n);
			if (w <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(p[1]);
	csv_reader r;
	cr_assert_eq(csv_open_fd(&r, p[0], ';'), 0, "%s", r.err);
	cr_assert_eq(csv_mark(&r), 0);
	uint64_t off = csv_offset(&r);
	size_t n = 0;
	while (csv_next(&r) == 1)
		n++;
	cr_assert_eq(n, nrec, "%s", r.err);
	cr_assert_eq(csv_kept(&r), len - off, "every byte after the mark");
	cr_assert_eq(csv_rewind(&r), 0, "%s", r.err);
	cr_assert_eq(csv_kept(&r), 0);
	check_big(&r, nrec);
	csv_close(&r);
	close(p[0]);
	free(s);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
}

/* ---- numbers ----------------------------------------------------------- */

static int p_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char err[128];
	return csv_parse_i64(s, strlen(s), min, max, out, err, sizeof err);
}

static int p_f64(const char *s, double *out)
{
	char err[128];
	return csv_parse_f64(s, strlen(s), out, err, sizeof err);
}

Test(csv, parse_i64_accepts_whole_integers)
{
	int64_t v = 0;
	cr_assert_eq(p_i64("0", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(p_i64("-0", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(p_i64("+42", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, 42);
	cr_assert_eq(p_i64("-8019", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, -8019);
	cr_assert_eq(p_i64("007", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, 7);
	cr_assert_eq(p_i64("9223372036854775807", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, INT64_MAX);
	cr_assert_eq(p_i64("-9223372036854775808", INT64_MIN, INT64_MAX, &v), 0);
	cr_assert_eq(v, INT64_MIN);
	/* A slice: only len bytes count. */
	cr_assert_eq(csv_parse_i64("12345", 2, 0, 100, &v, NULL, 0), 0);
	cr_assert_eq(v, 12);
}

Test(csv, parse_i64_rejects_anything_else)
{
	int64_t v = 99;
	static const char *bad[] = { "", "-", "+", " 1", "1 ", "1.0", "0x10",
				     "1e3", "--1", "12a", "\t5", "1_000" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(p_i64(bad[i], INT64_MIN, INT64_MAX, &v),
			     COHORT_EINVAL, "'%s'", bad[i]);
		cr_assert_eq(v, 99, "'%s' changed the output", bad[i]);
	}
	char err[128];
	cr_assert_eq(csv_parse_i64("7x", 2, 0, 10, &v, err, sizeof err),
		     COHORT_EINVAL);
	cr_assert_str_eq(err, "'7x' is not an integer");
	/* Syntax errors win over overflow. */
	cr_assert_eq(p_i64("99999999999999999999999x", INT64_MIN, INT64_MAX, &v),
		     COHORT_EINVAL);
}

Test(csv, parse_i64_checks_the_range)
{
	int64_t v = 99;
	cr_assert_eq(p_i64("9223372036854775808", INT64_MIN, INT64_MAX, &v),
		     COHORT_ERANGE);
	cr_assert_eq(p_i64("-9223372036854775809", INT64_MIN, INT64_MAX, &v),
		     COHORT_ERANGE);
	cr_assert_eq(p_i64("99999999999999999999999", INT64_MIN, INT64_MAX, &v),
		     COHORT_ERANGE);
	cr_assert_eq(p_i64("2147483648", INT32_MIN, INT32_MAX, &v),
		     COHORT_ERANGE);
	cr_assert_eq(p_i64("-2147483649", INT32_MIN, INT32_MAX, &v),
		     COHORT_ERANGE);
	cr_assert_eq(p_i64("151", 0, 150, &v), COHORT_ERANGE);
	cr_assert_eq(p_i64("-1", 0, 150, &v), COHORT_ERANGE);
	cr_assert_eq(v, 99);
	cr_assert_eq(p_i64("2147483647", INT32_MIN, INT32_MAX, &v), 0);
	cr_assert_eq(v, INT32_MAX);
	cr_assert_eq(p_i64("150", 0, 150, &v), 0);
	cr_assert_eq(v, 150);
	char err[128];
	cr_assert_eq(csv_parse_i64("151", 3, 0, 150, &v, err, sizeof err),
		     COHORT_ERANGE);
	cr_assert_str_eq(err, "151 is out of range [0, 150]");
}

Test(csv, parse_f64_accepts_decimal_numbers)
{
	static const struct { const char *s; double v; } ok[] = {
		{ "0", 0.0 }, { "1.5", 1.5 }, { "-0.25", -0.25 }, { ".5", 0.5 },
		{ "5.", 5.0 }, { "1e3", 1000.0 }, { "1E-3", 0.001 },
		{ "+2.5e+2", 250.0 }, { "700.00", 700.0 }, { "-8019", -8019.0 },
		{ "1.7976931348623157e308", 1.7976931348623157e308 },
		{ "1e-400", 0.0 },  /* rounds to the nearest double */
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		double v = -1;
		cr_assert_eq(p_f64(ok[i].s, &v), 0, "'%s'", ok[i].s);
		cr_assert_eq(v, ok[i].v, "'%s' gave %.17g", ok[i].s, v);
	}
	double v = 0;
	cr_assert_eq(csv_parse_f64("2.5xyz", 3, &v, NULL, 0), 0);
	cr_assert_eq(v, 2.5);
	/* Longer than the parser's stack buffer. */
	char big[300];
	memset(big, '0', sizeof big);
	big[0] = '1';
	big[1] = '.';
	big[sizeof big - 1] = '\0';
	cr_assert_eq(p_f64(big, &v), 0);
	cr_assert_eq(v, 1.0);
}

Test(csv, parse_f64_rejects_anything_else)
{
	static const char *bad[] = { "", ".", "-", "+.", "e5", "1e", "1e+",
				     " 1", "1 ", "inf", "-inf", "nan",
				     "infinity", "0x1p3", "1,5", "1.2.3",
				     "1e5.0", "--1", "1d", "\n1" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		double v = 99;
		cr_assert_eq(p_f64(bad[i], &v), COHORT_EINVAL, "'%s'", bad[i]);
		cr_assert_eq(v, 99, "'%s' changed the output", bad[i]);
	}
	double v = 99;
	cr_assert_eq(p_f64("1e999", &v), COHORT_ERANGE);
	cr_assert_eq(p_f64("-1e999", &v), COHORT_ERANGE);
	cr_assert_eq(v, 99);
	char err[128];
	cr_assert_eq(csv_parse_f64("abc", 3, &v, err, sizeof err),
		     COHORT_EINVAL);
	cr_assert_str_eq(err, "'abc' is not a number");
}

Test(csv, field_getters_name_the_line_and_column)
{
	csv_reader r;
	cr_assert_eq(open_str(&r, "age;balance\n58;2143.5\n\"x\";1e999\n"), 0);
	cr_assert_eq(csv_next(&r), 1);
	int64_t age = 0;
	double bal = 0;
	cr_assert_eq(csv_get_i64(&r, 0, 0, 150, &age), 0);
	cr_assert_eq(age, 58);
	cr_assert_eq(csv_get_f64(&r, 1, &bal), 0);
	cr_assert_eq(bal, 2143.5);
	cr_assert_eq(csv_get_i64(&r, 1, 0, 150, &age), COHORT_EINVAL);
	cr_assert_str_eq(r.err, "line 2, column 'balance': '2143.5' is not an "
				"integer");
	cr_assert_eq(csv_get_i64(&r, 2, 0, 150, &age), COHORT_EINVAL,
		     "no third field");
	cr_assert_eq(csv_next(&r), 1, "a field error does not stop the reader");
	cr_assert_eq(csv_get_i64(&r, 0, 0, 150, &age), COHORT_EINVAL);
	cr_assert_eq(r.err_line, 3);
	cr_assert_eq(csv_get_f64(&r, 1, &bal), COHORT_ERANGE);
	cr_assert(strstr(r.err, "line 3, column 'balance'"), "%s", r.err);
	cr_assert_eq(age, 58);
	csv_close(&r);
}
