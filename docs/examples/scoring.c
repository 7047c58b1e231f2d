/*
 * scoring.c -- a scoring service's three calls to cohortd, with
 * libcohort-client (docs/quickstart.md, part 1):
 *
 *   1. one customer's 32 features for one score (GET),
 *   2. a batch of 100 customers in one round trip (GET_MANY, columnar),
 *   3. one event per card transaction (EVENT: a counter, a decayed sum
 *      and the last amount, updated together and atomically).
 *
 * Build (from the repository root, after `make`):
 *   cc -std=c11 -O2 -Istore -Inet docs/examples/scoring.c \
 *      build/libcohort-client.a -lm -o scoring
 * Run against a server that has the quickstart's `customers` table
 * (docs/examples/setup.py) with a token of role write or admin:
 *   ./scoring 127.0.0.1 7411 write.token
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cohort_client.h"

#define NFEATURES 32
#define BATCH 100

static const char *const table = "customers";

/* Print why a call failed (the server's message names what was wrong). */
static int fail(cohort_client *c, const char *what, int rc)
{
	fprintf(stderr, "scoring: %s: %s (%s)\n", what, cohort_strerror(rc),
		c ? cohort_client_errmsg(c) : "");
	cohort_client_close(c);
	return 1;
}

/* A stand-in for the model: logistic regression with fixed weights. */
static double score(const double *x)
{
	double z = 0.25;
	for (int j = 0; j < NFEATURES; j++)
		z += (j % 2 ? 0.08 : -0.05) * x[j];
	return 1 / (1 + exp(-z));
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: scoring HOST PORT TOKEN_FILE\n");
		return 2;
	}
	const char *host = argv[1];
	uint16_t port = (uint16_t)atoi(argv[2]);

	/* Connect (HELLO) and authenticate from a token file: a token never
	 * goes on a command line. */
	cohort_client *c = NULL;
	int rc = cohort_client_connect(host, port, NULL, &c);
	if (rc)
		return fail(c, "connect", rc);
	int role = 0;
	rc = cohort_client_auth_file(c, argv[3], &role);
	if (rc)
		return fail(c, "auth", rc);
	cohort_client_info info;
	cohort_client_info_get(c, &info);
	static const char *const roles[] = { "none", "read", "write",
					     "admin" };
	printf("connected to %s as %s, max_batch %u\n", info.server_name,
	       roles[role & 3], info.max_batch);

	/* Column names -> ids, once: the client caches the schema. */
	int feat[NFEATURES];
	for (int j = 0; j < NFEATURES; j++) {
		char name[8];
		snprintf(name, sizeof name, "f%02d", j);
		feat[j] = cohort_client_column(c, table, name);
		if (feat[j] < 0)
			return fail(c, name, feat[j]);
	}

	/* 1. One customer: GET of the 32 feature columns. */
	const char *key = "cust-000042";
	cohort_value vals[NFEATURES];
	size_t nvals = 0;
	rc = cohort_client_get(c, table, key, strlen(key), feat, NFEATURES,
			       COHORT_NOW, vals, NFEATURES, &nvals, NULL);
	if (rc < 0)
		return fail(c, "get", rc);
	if (rc != COHORT_ROW_PRESENT) {
		fprintf(stderr, "scoring: %s is not there (status %d)\n", key,
			rc);
		cohort_client_close(c);
		return 1;
	}
	double x[NFEATURES];
	for (size_t j = 0; j < nvals; j++)     /* a null feature counts as 0 */
		x[j] = vals[j].type == COHORT_F64 ? vals[j].v.f64 : 0;
	printf("get %s: %zu features, f00 = %.4f, score %.4f\n", key, nvals,
	       x[0], score(x));

	/* 2. A batch: one GET_MANY, answered as one block per column. */
	char kbuf[BATCH][16];
	cohort_key keys[BATCH];
	for (int i = 0; i < BATCH; i++) {
		snprintf(kbuf[i], sizeof kbuf[i], "cust-%06d", i);
		keys[i].ptr = kbuf[i];
		keys[i].len = strlen(kbuf[i]);
	}
	const cohort_client_batch *b;
	rc = cohort_client_get_many(c, table, keys, BATCH, feat, NFEATURES,
				    COHORT_NOW, &b);
	if (rc)
		return fail(c, "get_many", rc);
	size_t present = 0;
	double sum = 0;
	for (size_t i = 0; i < b->nkeys; i++) {
		if (b->status[i] != COHORT_ROW_PRESENT)
			continue;
		for (size_t j = 0; j < b->ncols; j++) {
			const double *col = b->cols[j].values;  /* f64 */
			x[j] = b->cols[j].valid[i] ? col[i] : 0;
		}
		sum += score(x);
		present++;
	}
	printf("get_many: %zu of %zu customers present, mean score %.4f\n",
	       present, b->nkeys, present ? sum / present : 0.0);

	/* 3. Transactions: one EVENT each. The three updates apply together
	 * or not at all; the response comes once the write is as durable as
	 * the server's --fsync policy promises. */
	int txn_count = cohort_client_column(c, table, "txn_count");
	int spend = cohort_client_column(c, table, "spend_7d");
	int last = cohort_client_column(c, table, "last_amount");
	if (txn_count < 0 || spend < 0 || last < 0)
		return fail(c, "aggregate columns", txn_count < 0 ? txn_count :
			    spend < 0 ? spend : last);
	const double amounts[] = { 12.5, 80.0, 3.2, 45.9, 19.99 };
	for (size_t t = 0; t < sizeof amounts / sizeof amounts[0]; t++) {
		cohort_update u[3] = {
			{ txn_count, COHORT_OP_ADD, cohort_f64(1) },
			{ spend, COHORT_OP_ADD, cohort_f64(amounts[t]) },
			{ last, COHORT_OP_OBSERVE, cohort_f64(amounts[t]) },
		};
		rc = cohort_client_event(c, table, key, strlen(key), COHORT_NOW,
					 u, 3);
		if (rc)
			return fail(c, "event", rc);
	}
	int agg[3] = { txn_count, spend, last };
	rc = cohort_client_get(c, table, key, strlen(key), agg, 3, COHORT_NOW,
			       vals, 3, &nvals, NULL);
	if (rc < 0)
		return fail(c, "get", rc);
	printf("events: %s txn_count %.0f, spend_7d %.2f, last_amount %.2f\n",
	       key, vals[0].v.f64, vals[1].v.f64, vals[2].v.f64);
	cohort_client_close(c);
	return 0;
}
