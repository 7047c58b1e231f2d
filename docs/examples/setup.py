"""setup.py -- the quickstart's first step: create the `customers` table
and load synthetic customers into it (docs/quickstart.md).

    PYTHONPATH=net/python python3 docs/examples/setup.py \
        --port 7411 --token-file admin.token --customers 2000

Needs an admin token (TABLE_CREATE). Running it again on a table that
already exists just loads the customers again (an upsert per key).

Schema: 32 f64 features f00..f31 for the scoring model, three aggregates
the transaction stream keeps (txn_count, spend_7d decayed with a 7-day
half-life, last_amount), a 64-dimensional embedding for recommendations,
a consent flag and a segment.
"""
import argparse
import sys

import numpy as np

import cohort

DAY_MS = 24 * 3600 * 1000
NFEATURES = 32
DIM = 64
SEGMENTS = ["retail", "premium", "business", "student"]

COLUMNS = ([("f%02d" % i, "f64") for i in range(NFEATURES)] + [
    ("txn_count", "counter"),
    ("spend_7d", "decay", 0, 7 * DAY_MS),
    ("last_amount", "last"),
    ("emb", "vec", DIM),
    ("consent", "bool"),
    ("segment", "cat"),
])


def customer_key(i):
    return "cust-%06d" % i


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7411)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--customers", type=int, default=2000)
    args = ap.parse_args()

    with cohort.Client(args.host, args.port,
                       token_file=args.token_file) as db:
        try:
            db.table_create("customers", COLUMNS)
            print("created table customers (%d columns)" % len(COLUMNS))
        except cohort.CohortError as e:
            if e.name != "EEXIST":
                raise
            print("table customers exists")

        # Embeddings around 8 centres, so that similar customers and
        # personas mean something; the same seed gives the same data.
        rng = np.random.default_rng(7)
        centres = rng.normal(0, 1, (8, DIM)).astype(np.float32)
        n = args.customers
        group = rng.integers(0, len(centres), n)
        emb = centres[group] + rng.normal(0, 0.3, (n, DIM)).astype(np.float32)
        feats = rng.normal(0, 1, (n, NFEATURES))
        consent = rng.random(n) < 0.7
        rows = []
        for i in range(n):
            fields = {"f%02d" % j: float(feats[i, j])
                      for j in range(NFEATURES)}
            fields["emb"] = emb[i]
            fields["consent"] = bool(consent[i])
            fields["segment"] = SEGMENTS[group[i] % len(SEGMENTS)]
            rows.append((customer_key(i), fields))
        # put_many splits the rows into requests within the server's
        # max_batch and max_frame
        res = db.put_many("customers", rows)
        res.raise_for_status()
        info = db.describe("customers")
        print("loaded %d customers: table has %d rows, %d bytes in memory"
              % (n, info.nrows, info.mem_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
