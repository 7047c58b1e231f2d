"""sizing.py -- measure the memory cohortd holds per customer for a schema
(docs/operations.md, "Sizing"): 32 f64 features, one 64-dimensional
embedding and 4 cat columns, then an HNSW index on the embedding and a
persona model over it.

    PYTHONPATH=net/python python3 docs/examples/sizing.py \
        --port 7411 --token-file admin.token --rows 100000 [--pid PID]

The numbers are the server's own accounting (DESCRIBE's mem_bytes per
table, which includes an index's per-row maps; an index's bytes, which
are its graph and those maps), counting every allocation with the
allocator's rounding; with --pid (a cohortd on this machine) the
change of the process's resident memory is printed beside them. Use a
server with nothing else in it: the table is called `sizing`.
"""
import argparse
import sys

import numpy as np

import cohort

DIM = 64


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=7411)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--key-len", type=int, default=12)
    ap.add_argument("--pid", type=int, default=0)
    args = ap.parse_args()
    n = args.rows
    db = cohort.Client(args.host, args.port, token_file=args.token_file,
                       timeout=600)
    cols = ([("f%02d" % i, "f64") for i in range(32)] + [("emb", "vec", DIM)]
            + [("c%d" % i, "cat") for i in range(4)])
    db.table_create("sizing", cols)

    def mem():
        return db.describe("sizing").mem_bytes

    def rss():
        return rss_kb(args.pid) * 1024 if args.pid else 0

    empty, rss0 = mem(), rss()
    rng = np.random.default_rng(1)
    cats = ["v%d" % i for i in range(10)]
    step = 5000
    for s in range(0, n, step):
        m = min(step, n - s)
        feats = rng.normal(0, 1, (m, 32))
        emb = rng.normal(0, 1, (m, DIM)).astype(np.float32)
        rows = []
        for i in range(m):
            fields = {"f%02d" % j: float(feats[i, j]) for j in range(32)}
            fields["emb"] = emb[i]
            for j in range(4):
                fields["c%d" % j] = cats[(s + i + j) % len(cats)]
            key = ("%0*d" % (args.key_len, s + i))[-args.key_len:]
            rows.append((key, fields))
        db.put_many("sizing", rows).raise_for_status()
    loaded, rss1 = mem(), rss()

    db.index_create("sizing", "emb_idx", "emb")
    info = db.describe("sizing")
    ix = info.indexes[0]
    indexed, rss2 = info.mem_bytes, rss()

    db.persona_train("sizing", "p16", columns=["emb"], k=16, seed=1)
    trained, rss3 = mem(), rss()

    def line(what, nbytes, rss_bytes):
        extra = ("   (process RSS +%.1f B/row)" % (rss_bytes / n)
                 if args.pid else "")
        print("%-36s %12d bytes  %8.1f B/row%s"
              % (what, nbytes, nbytes / n, extra))

    print("rows %d, keys of %d bytes" % (n, args.key_len))
    print("%-36s %12d bytes" % ("empty table", empty))
    line("rows (32 f64 + vec64 + 4 cat)", loaded - empty, rss1 - rss0)
    # an index's bytes count its per-row maps, which the table's
    # mem_bytes counts too: the graph is the rest
    maps = indexed - loaded
    line("index: the table's per-row maps", maps, 0)
    line("index: graph (index bytes - maps)", ix.bytes - maps, rss2 - rss1)
    line("persona model k=16 over emb", trained - indexed, rss3 - rss2)
    line("total", trained - empty + ix.bytes - maps, rss3 - rss0)
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
