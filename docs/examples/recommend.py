"""recommend.py -- a recommendation backend on cohortd (docs/quickstart.md,
part 2): a similarity index on the customers' embeddings, lookalikes of a
customer restricted to those who consented, personas (train, assign,
members) and a subscription that is told when a customer changes persona.

    PYTHONPATH=net/python python3 docs/examples/recommend.py \
        --port 7411 --token-file admin.token

Creating the index and training the model need an admin token; the
queries and the subscription need only read, the write that moves a
customer needs write.
"""
import argparse
import sys

import cohort
from cohort import F

TABLE = "customers"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7411)
    ap.add_argument("--token-file", required=True)
    args = ap.parse_args()
    db = cohort.Client(args.host, args.port, token_file=args.token_file,
                       timeout=30)

    # 1. An HNSW index on the vec column (once; the rows already there
    #    are in it when the call returns, and every write keeps it current).
    try:
        db.index_create(TABLE, "emb_idx", "emb", metric="l2")
        print("created index emb_idx on customers.emb")
    except cohort.CohortError as e:
        if e.name != "EEXIST":
            raise
        print("index emb_idx exists")

    # 2. Lookalikes: the 10 nearest customers to one customer's embedding,
    #    only among those who consented (the key itself is excluded).
    me = "cust-000042"
    consented = F("consent") == True  # noqa: E712 (builds a filter)
    near = db.knn(TABLE, "emb_idx", key=me, k=10, where=consented)
    flags = db.get_many(TABLE, [n.key for n in near], cols=["consent"])
    print("knn %s: %d neighbours, nearest %s at %.3f, all consented: %s"
          % (me, len(near), near[0].key, near[0].distance,
             bool(flags["consent"].all())))

    # 3. Personas: k-means on the embeddings; every row is then kept in
    #    its nearest persona as it changes (at once, inside each write).
    version = db.persona_train(TABLE, "taste", columns=["emb"], k=8, seed=1,
                               mode="at_once")
    sizes = db.persona_sizes(TABLE, "taste")
    print("trained taste v%d: k=%d, sizes sum to %d"
          % (version, sizes.k, int(sizes.sizes.sum())))

    a = db.persona_assign(TABLE, "taste", key=me, m=3)
    print("assign %s: persona %d (distance %.3f, anomaly %.2f), next %s"
          % (me, a.persona, a.distance, a.anomaly,
             [p for p, _ in a.nearest[1:]]))
    count, keys = db.persona_members(TABLE, "taste", a.persona, limit=5,
                                     where=consented)
    print("members of persona %d who consented: %d (first %s)"
          % (a.persona, count, keys[0] if keys else "-"))

    # 4. Persona changes, pushed by the server. A second connection
    #    subscribes from now on; then the customer's embedding changes to
    #    that of a member of another persona, which moves the customer.
    watcher = cohort.Client(args.host, args.port,
                            token_file=args.token_file, timeout=30)
    sub = watcher.subscribe(TABLE, "taste")          # cursor: from now
    other = next(p for p in range(sizes.k)
                 if p != a.persona and sizes.sizes[p] > 0)
    _, donor = db.persona_members(TABLE, "taste", other, limit=1)
    emb = db.get(TABLE, donor[0], cols=["emb"])["emb"]
    db.put(TABLE, me, {"emb": emb})
    changes = sub.poll(timeout=5)
    for ch in changes:
        print("change #%d: %s moved from persona %d to %d (version %d)"
              % (ch.seq, ch.key, ch.old_persona, ch.new_persona, ch.version))
    if not changes:
        sys.exit("recommend.py: no change pushed within 5 s")
    sub.close()
    watcher.close()
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
