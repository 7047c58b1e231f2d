/*
 * tsan_common.h -- for the ThreadSanitizer drivers (tests/tsan/): Criterion
 * cannot run under ThreadSanitizer (its arena needs a fixed mapping), so
 * these are plain programs that `make test` builds with -fsanitize=thread
 * and runs; a race, a failed call or a wrong answer ends them with a
 * nonzero status.
 */
#ifndef COHORT_TSAN_COMMON_H
#define COHORT_TSAN_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "cohort.h"

#define CHECK(x)                                                              \
	do {                                                                  \
		int rc_ = (x);                                                \
		if (rc_ < 0) {                                                \
			fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__,     \
				__LINE__, #x, cohort_strerror(rc_),           \
				cohort_errdetail());                          \
			exit(1);                                              \
		}                                                             \
	} while (0)

#define EXPECT(c, ...)                                                        \
	do {                                                                  \
		if (!(c)) {                                                   \
			fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);       \
			fprintf(stderr, __VA_ARGS__);                         \
			fputc('\n', stderr);                                  \
			exit(1);                                              \
		}                                                             \
	} while (0)

#endif
