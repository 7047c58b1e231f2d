/*
 * salvage.c -- open a damaged data directory with the embedded API's
 * salvage option, keep what is intact, and say what was lost
 * (docs/operations.md, "Recovery"). cohortd has no salvage flag: when it
 * refuses to start with "data is corrupt (log ...: bad record at offset
 * N ...)", stop here, copy the directory, then run this once on it with
 * cohortd stopped; cohortd then starts normally.
 *
 * Build (from the repository root, after `make`):
 *   cc -std=c11 -O2 -pthread -Istore docs/examples/salvage.c \
 *      build/libcohort.a -luring -ljemalloc -lm -o salvage
 * Run:
 *   ./salvage ./var
 *
 * Exit status: 0 when the directory opens (with or without losses), 1 when
 * even salvage cannot open it (damage to a snapshot's headers, schema or
 * keys), 2 for a usage error.
 */
#include <stdio.h>

#include "cohort.h"

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: salvage DATA_DIR (with cohortd stopped)\n");
		return 2;
	}
	cohort_options opts;
	cohort_options_init(&opts);
	opts.salvage = true;      /* keep the intact part instead of failing */
	opts.fsync = COHORT_FSYNC_ALWAYS;
	cohort_db *db = NULL;
	int rc = cohort_open(argv[1], &opts, &db);
	if (rc) {
		fprintf(stderr, "salvage: cannot open %s: %s (%s)\n", argv[1],
			cohort_strerror(rc), cohort_errdetail());
		return 1;
	}
	/* What recovery cut or lost, exactly as cohortd would log it. The
	 * damaged files are kept beside the others as *.damaged. */
	const char *what = cohort_db_recovery(db);
	printf("recovery: %s\n", what[0] ? what : "clean, nothing cut or lost");
	for (size_t i = 0; i < cohort_db_ntables(db); i++) {
		cohort_table *t;
		cohort_table_info ti;
		if (cohort_table_open(db, cohort_db_table_name(db, i), &t) == 0 &&
		    cohort_table_describe(t, &ti) == 0)
			printf("table %s: %llu rows\n", ti.name,
			       (unsigned long long)ti.nrows);
	}
	/* A snapshot of what was kept, so the next open replays nothing that
	 * salvage had to skip. */
	rc = cohort_snapshot(db);
	if (rc)
		fprintf(stderr, "salvage: snapshot: %s (%s)\n",
			cohort_strerror(rc), cohort_errdetail());
	int crc = cohort_close(db);
	if (crc)
		fprintf(stderr, "salvage: close: %s (%s)\n",
			cohort_strerror(crc), cohort_errdetail());
	return rc || crc ? 1 : 0;
}
