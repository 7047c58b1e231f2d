"""scoring.py -- the scoring service of docs/examples/scoring.c in Python
(docs/quickstart.md, part 1): one customer's 32 features, a batch of 100
as numpy arrays, and one event per transaction.

    PYTHONPATH=net/python python3 docs/examples/scoring.py \
        --port 7411 --token-file write.token
"""
import argparse
import sys

import numpy as np

import cohort

FEATURES = ["f%02d" % j for j in range(32)]
# a stand-in for the model: logistic regression with fixed weights
WEIGHTS = np.array([0.08 if j % 2 else -0.05 for j in range(32)])
BIAS = 0.25


def score(x):
    """x: (32,) or (n, 32) features; nulls already replaced by 0."""
    return 1 / (1 + np.exp(-(x @ WEIGHTS + BIAS)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7411)
    ap.add_argument("--token-file", required=True)
    args = ap.parse_args()

    # HELLO, then AUTH with the token read from the file
    db = cohort.Client(args.host, args.port, token_file=args.token_file,
                       timeout=10)
    print("connected to %s as %s" % (db.server.name, db.role))

    # 1. One customer: GET gives a Row, a dict column -> value.
    key = "cust-000007"
    row = db.get("customers", key, cols=FEATURES)
    if not row.present:
        sys.exit("scoring.py: %s is not there" % key)
    x = np.array([row[f] if row[f] is not None else 0.0 for f in FEATURES])
    print("get %s: %d features, f00 = %.4f, score %.4f"
          % (key, len(row), x[0], score(x)))

    # 2. A batch: GET_MANY gives one numpy array per column.
    keys = ["cust-%06d" % i for i in range(100)]
    batch = db.get_many("customers", keys, cols=FEATURES)
    present = batch.status == 1
    X = np.column_stack([np.where(batch.valid[f], batch[f], 0.0)
                         for f in FEATURES])
    scores = score(X[present])
    print("get_many: %d of %d customers present, mean score %.4f"
          % (present.sum(), len(batch), scores.mean()))

    # 3. Transactions: one EVENT each, all three updates or none. A
    # pipeline sends them together and reads the answers after.
    amounts = [12.5, 80.0, 3.2, 45.9, 19.99]
    with db.pipeline() as p:
        for a in amounts:
            p.event("customers", key, [("txn_count", "add", 1),
                                       ("spend_7d", "add", a),
                                       ("last_amount", "observe", a)])
    row = db.get("customers", key,
                 cols=["txn_count", "spend_7d", "last_amount"])
    print("events: %s txn_count %.0f, spend_7d %.2f, last_amount %.2f"
          % (key, row["txn_count"], row["spend_7d"], row["last_amount"]))
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
