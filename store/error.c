/*
 * error.c -- error messages: the code table of cohort.h and the calling
 * thread's detail of its last failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "store_int.h"

static _Thread_local char detail[512];

const char *cohort_strerror(int code)
{
	switch (code) {
#define COHORT_X_CASE(name, value, msg)                                       \
	case (value):                                                         \
		return (msg);
		COHORT_ERRORS(COHORT_X_CASE)
#undef COHORT_X_CASE
	default:
		return "unknown error";
	}
}

const char *cohort_errdetail(void)
{
	return detail;
}

int seterr(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	return code;
}

cohort_time cohort_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (cohort_time)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *cohort_type_name(cohort_type type)
{
	static const char *const names[] = {
		"null", "f32", "f64", "i32", "i64", "bool", "cat", "vec",
		"counter", "decay", "min", "max", "last"
	};
	if ((unsigned)type < sizeof(names) / sizeof(names[0]))
		return names[type];
	return "?";
}

cohort_value cohort_cat(const char *s)
{
	size_t n = 0;
	while (s && s[n])
		n++;
	return cohort_catn(s, (uint32_t)n);
}
