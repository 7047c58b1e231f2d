/*
 * run_int.h -- what the two files of cohort-run share: run.c (the program:
 * flags, the token, the cohortd child, the summary, serving) and
 * run_load.c (reading ../shared/data and loading it over the wire).
 *
 * Everything here is a program's top level: on an error, run_die prints
 * what failed and why (the file and line of bad input, the server's
 * message for a refused request) and exits 1, after stopping the cohortd
 * child that run.c registered with run_on_die.
 */
#ifndef COHORT_RUN_INT_H
#define COHORT_RUN_INT_H

#include <stdint.h>

#include "cohort_client.h"

/* The tables and models make run creates (run_load.c) and describes
 * (run.c). */
#define RUN_BANK "bank"
#define RUN_ACCOUNT "account"
#define RUN_INFO "run_info"            /* one row "load": written last */
#define RUN_BANK_MODEL "segments"
#define RUN_ACCOUNT_MODEL "profiles"
#define RUN_INDEX "lookalike"          /* on bank.profile */
#define RUN_DECAY_DAYS 30              /* half-life of the spend columns */

/* What a load did. */
typedef struct run_loaded {
	uint64_t bank_rows, accounts, transactions;
	double parse_s, bank_s, berka_s, train_s, index_s, total_s;
} run_loaded;

/* Load data_dir's bank-marketing/bank.csv and berka/ into an empty
 * database over c, train the personas, create the index, write the
 * run_info row and a snapshot. Prints one line per step. */
void run_load(cohort_client *c, const char *data_dir, run_loaded *out);

/* Print "cohort-run: <message>" on stderr and exit 1 (after the hook). */
void run_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
						  noreturn));
/* Called by run_die before it exits (stops the child). */
void run_on_die(void (*hook)(void));

/* Die with the client's message when rc is an error. */
void run_check(cohort_client *c, int rc, const char *what);

/* Seconds on a monotonic clock. */
double run_seconds(void);

#endif /* COHORT_RUN_INT_H */
