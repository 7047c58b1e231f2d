"""test_cohort.py -- tests of net/python/cohort.py.

Run: COHORT_BIN=build /usr/bin/python3 net/python/test_cohort.py

Offline (no server): frames are compared byte for byte with frames written
by hand from docs/protocol.md, and hand-written responses are decoded, over
a socketpair whose other end is a scripted fake server.

Online: starts the real $COHORT_BIN/cohortd (a temporary --dir, 127.0.0.1:0,
--port-file, a 0600 token file with read, write and admin tokens) and
exercises every call against it. Skipped, saying why, when cohortd is not
built.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cohort  # noqa: E402
from cohort import F, Persona, CohortError, ConnectionClosed  # noqa: E402

COHORT_BIN = os.environ.get("COHORT_BIN", "build")
COHORTD = os.path.join(COHORT_BIN, "cohortd")
MAX_BATCH = 100      # the server's, so that batches get split
TOKENS = {"read": "read-token-0123456789abcdef",
          "write": "write-token-0123456789abcdef",
          "admin": "admin-token-0123456789abcdef"}


def h(text):
    """Bytes from hex written with spaces and '|' separators."""
    return bytes.fromhex(text.replace("|", " "))


def response(opcode, rid, body, flags=1):
    return struct.pack("<2sBBHHII", b"CH", 1, opcode, flags, 0, rid,
                       len(body)) + body


class FakeServer(threading.Thread):
    """The other end of a socketpair: reads one request frame per scripted
    response, records it and answers; then closes."""

    def __init__(self, sock, responses):
        super().__init__(daemon=True)
        self.sock, self.responses, self.requests = sock, responses, []

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def run(self):
        try:
            for resp in self.responses:
                head = self._read(16)
                body = self._read(struct.unpack_from("<I", head, 12)[0])
                self.requests.append(head + body)
                self.sock.sendall(resp)
        except (EOFError, OSError):
            pass
        finally:
            self.sock.close()


class FrameTest(unittest.TestCase):
    """Encoding and decoding, no server."""

    def test_ping_frame_is_byte_exact(self):
        self.assertEqual(cohort.encode_frame(0x03, 7),
                         h("43 48 | 01 | 03 | 00 00 | 00 00 | 07 00 00 00 |"
                           "00 00 00 00"))

    def test_header_decodes_and_rejects_bad_frames(self):
        good = h("43 48 01 57 03 00 00 00 2a 00 00 00 05 00 00 00")
        self.assertEqual(cohort.decode_header(good), (0x57, 3, 42, 5))
        for bad, why in ((b"XH" + good[2:], "magic"),
                         (good[:2] + b"\x02" + good[3:], "version"),
                         (good[:6] + b"\x01\x00" + good[8:], "reserved"),
                         (good[:4] + b"\x04\x00" + good[6:], "flags"),
                         (good[:10], "short")):
            with self.assertRaises(CohortError, msg=why) as cm:
                cohort.decode_header(bad)
            self.assertEqual(cm.exception.name, "EPROTO")

    def test_requests_are_byte_exact_and_responses_decode(self):
        describe_body = h(
            "00000000 | 0000000000000000 | 0200000000000000 |"
            "6400000000000000 | 0300 |"
            "03 616765 | 03 | 00000000 | 0000000000000000 | 00000000 |"
            "03 6a6f62 | 06 | 00000000 | 0000000000000000 | 02000000 |"
            "01 76     | 07 | 02000000 | 0000000000000000 | 00000000 |"
            "00 | 00")
        get_body = h("00000000 | 01 | e803000000000000 | 0100 | 03 2a000000")
        block = h(
            "00000000 | 02000000 | 0300 | 01 00 |"
            "e803000000000000 0000000000000000 |"
            "0000 | 03 | 01000000 | 04000000 | 01 00 | 2a000000 00000000 |"
            "0100 | 06 | 01000000 | 04000000 | 01 00 | 01000000 00000000 |"
            "0200 | 07 | 02000000 | 08000000 | 01 00 |"
            "0000803f 00000040 0000000000000000 |"
            "02000000 | 0500 61646d696e | 0400 74656368")
        batch_ok = h("00000000 | 01000000 | 00000000 | 00000000")
        count = h("00000000 | 0700000000000000")
        err = h("fdffffff | 0900") + b"no such k"
        a, b = socket.socketpair()
        fake = FakeServer(b, [response(0x12, 1, describe_body),
                              response(0x30, 2, get_body),
                              response(0x31, 3, block),
                              response(0x20, 4, batch_ok),
                              response(0x32, 5, count),
                              response(0x30, 6, err)])
        fake.start()
        c = cohort.Client(sock=a, hello=False, timeout=5)
        row = c.get("t", "k1", cols=["age"])
        batch = c.get_many("t", ["a", "b"])
        c.put("t", "k", {"age": 7, "job": "x"}, time=5)
        n = c.filter_count("t", (F("age") > 30) & F("job").isin(["admin"])
                           & Persona("m", 3))
        with self.assertRaises(CohortError) as cm:
            c.get("t", "zz")
        with self.assertRaises(ConnectionClosed):
            c.ping()
        fake.join(5)
        c.close()

        want = [
            # DESCRIBE "t" (the get needs the column ids)
            h("43 48 01 12 0000 0000 01000000 02000000 | 01 74"),
            # GET t, now, 1 column (0), key "k1"
            h("43 48 01 30 0000 0000 02000000 11000000 | 01 74 |"
              "0000000000000080 | 0100 | 0000 | 02 6b31"),
            # GET_MANY t, now, all columns, keys "a" "b"
            h("43 48 01 31 0000 0000 03000000 14000000 | 01 74 |"
              "0000000000000080 | 0000 | 02000000 | 01 61 | 01 62"),
            # PUT t, 1 row: "k" at 5, age (i32) 7, job (cat) "x"
            h("43 48 01 20 0000 0000 04000000 1f000000 | 01 74 | 01000000 |"
              "01 6b | 0500000000000000 | 0200 | 0000 03 07000000 |"
              "0100 06 0100 78"),
            # FILTER_COUNT t, now: age > 30 (i64), job in {admin}, and,
            # persona m 3, and
            h("43 48 01 32 0000 0000 05000000 37000000 | 01 74 |"
              "0000000000000080 | 0500 |"
              "01 0000 05 04 1e00000000000000 |"
              "02 0100 0100 06 0500 61646d696e |"
              "05 0000 0100 |"
              "08 01 6d 03000000 |"
              "05 0200 0300"),
        ]
        self.assertEqual(fake.requests[:5], want)

        self.assertEqual(dict(row), {"age": 42})
        self.assertEqual((row.status, row.time), (1, 1000))
        self.assertEqual(batch.status.tolist(), [1, 0])
        self.assertEqual(batch.time.tolist(), [1000, 0])
        self.assertEqual(batch["age"].dtype, np.dtype("<i4"))
        self.assertEqual(batch["age"].tolist(), [42, 0])
        self.assertEqual(batch.valid["age"].tolist(), [True, False])
        self.assertEqual(batch["job"], ["tech", None])
        self.assertEqual(batch["v"].shape, (2, 2))
        self.assertEqual(batch["v"].dtype, np.dtype("<f4"))
        self.assertEqual(batch["v"][0].tolist(), [1.0, 2.0])
        self.assertEqual(n, 7)
        self.assertEqual((cm.exception.code, cm.exception.name,
                          cm.exception.message),
                         (-3, "ENOTFOUND", "no such k"))

    def test_a_response_out_of_order_is_a_protocol_error(self):
        a, b = socket.socketpair()
        fake = FakeServer(b, [response(0x03, 99, h("00000000"))])
        fake.start()
        c = cohort.Client(sock=a, hello=False, timeout=5)
        with self.assertRaises(CohortError) as cm:
            c.ping()
        self.assertEqual(cm.exception.name, "EPROTO")
        with self.assertRaises(ConnectionClosed):
            c.ping()
        fake.join(5)

    def test_pushes_are_routed_to_their_subscription(self):
        sub_ok = h("00000000 | 0500000000000000")
        push = h("00000000 | 0200000000000000 | 01000000 |"
                 "0600000000000000 | e803000000000000 | 0100000000000000 |"
                 "00000000 | 01000000 | 02 6b31")
        retrain = h("00000000 | 0000000000000000 | 01000000 |"
                    "0700000000000000 | e903000000000000 | 0200000000000000 |"
                    "ffffffff | ffffffff | 00")
        a, b = socket.socketpair()
        fake = FakeServer(b, [
            # the SUBSCRIBE response, then at once a push
            response(0x55, 1, sub_ok) + response(0x57, 1, push, flags=3),
            # a push of another request id (dropped), one of ours, then
            # the PING's response
            response(0x57, 9, push, flags=3)
            + response(0x57, 1, retrain, flags=3)
            + response(0x03, 2, h("00000000"))])
        fake.start()
        c = cohort.Client(sock=a, hello=False, timeout=5)
        sub = c.subscribe("t", "m")
        c.ping()
        fake.join(5)
        self.assertEqual(fake.requests[0],
                         h("43 48 01 55 0000 0000 01000000 0c000000 |"
                           "01 74 | 01 6d | ffffffffffffffff"))
        self.assertEqual(sub.cursor, 5)
        self.assertEqual(sub.poll(0), [
            cohort.Change(6, 1000, 1, 0, 1, "k1"),
            cohort.Change(7, 1001, 2, cohort.PERSONA_NONE,
                          cohort.PERSONA_NONE, "")])
        self.assertEqual(sub.lost, 2)
        with self.assertRaises(ConnectionClosed):
            sub.poll(1)
        c.close()

    def test_a_silent_server_times_out(self):
        a, b = socket.socketpair()
        c = cohort.Client(sock=a, hello=False, timeout=0.2)
        t0 = time.monotonic()
        with self.assertRaises(ConnectionClosed):
            c.ping()
        self.assertLess(time.monotonic() - t0, 2)
        b.close()

    def test_filter_needs_parentheses(self):
        with self.assertRaises(TypeError):
            F("age") > 30 & F("job").isin(["admin"])
        with self.assertRaises(TypeError):
            bool(F("a") > 1)
        self.assertEqual(((F("a") == None) | ~(F("b") != "x")).nodes(),
                         [("is_null", "a"), ("cmp", "b", "ne", "x"),
                          ("not", 1), ("or", 0, 2)])

    def test_bad_keys_and_values_fail_before_sending(self):
        a, b = socket.socketpair()
        c = cohort.Client(sock=a, hello=False, timeout=5)
        for key in ("", "x" * 256, 12):
            with self.assertRaises(CohortError) as cm:
                c.delete("t", key)
            self.assertEqual(cm.exception.name, "EKEY")
        w = cohort._W()
        for ctype, v, name in ((3, 2 ** 31, "ERANGE"), (3, 1.5, "ETYPE"),
                               (1, "x", "ETYPE"), (1, 1e300, "ERANGE"),
                               (6, 3, "ETYPE"), (5, 2, "ETYPE")):
            with self.assertRaises(CohortError) as cm:
                cohort._enc_value(w, ctype, v, "c")
            self.assertEqual(cm.exception.name, name, (ctype, v))
        c.close()
        b.close()


def server_args(tmp):
    tok = os.path.join(tmp, "tokens")
    fd = os.open(tok, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        for role, t in TOKENS.items():
            f.write("%s %s\n" % (role, t))
    return ["--dir", os.path.join(tmp, "data"), "--listen", "127.0.0.1:0",
            "--port-file",
            os.path.join(tmp, "port"), "--token-file", tok, "--threads", "2",
            "--fsync", "none", "--max-batch", str(MAX_BATCH)]


@unittest.skipUnless(os.access(COHORTD, os.X_OK),
                     "%s is not built (make build/cohortd; set COHORT_BIN)"
                     % COHORTD)
class ServerTest(unittest.TestCase):
    """Every call against a real cohortd."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cohort-py-")
        cls.log = open(os.path.join(cls.tmp, "log"), "w+")
        cls.proc = subprocess.Popen([COHORTD] + server_args(cls.tmp),
                                    stdout=cls.log, stderr=cls.log)
        try:
            cls._start()
        except BaseException:
            # unittest skips tearDownClass when setUpClass fails
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls):
        port_file = os.path.join(cls.tmp, "port")
        deadline = time.monotonic() + 5
        cls.port = None
        while time.monotonic() < deadline and cls.proc.poll() is None:
            try:
                with open(port_file) as f:
                    text = f.read()
                if text.endswith("\n"):
                    cls.port = int(text)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
        if cls.port is None:
            raise RuntimeError("cohortd did not start: " + cls._log_text())
        with cls.client("admin") as c:
            c.table_create("people", [
                ("age", "i32"), ("income", "f64"), ("job", "cat"),
                ("vip", "bool"), ("emb", "vec", 4), ("clicks", "counter"),
                ("score", "decay", 0, 60000), ("w", "f32")])
            c.table_create("pts", [("x", "f64"), ("y", "f64")])
            rng = np.random.default_rng(1)
            rows = []
            for i in range(40):
                cx = 0.0 if i < 20 else 10.0
                rows.append(("p%d" % i, {"x": cx + rng.normal(0, 0.5),
                                         "y": cx + rng.normal(0, 0.5)}))
            c.put_many("pts", rows).raise_for_status()
            cls.version = c.persona_train("pts", "m", ["x", "y"], k=2, seed=7)

    @classmethod
    def _log_text(cls):
        cls.log.seek(0)
        return cls.log.read()[-2000:]

    @classmethod
    def tearDownClass(cls):
        died = cls.proc.poll()
        if died is None:
            cls.proc.send_signal(signal.SIGTERM)
            try:
                cls.proc.wait(5)
            except subprocess.TimeoutExpired:
                cls.proc.kill()
                cls.proc.wait()
        if died is not None or cls.proc.returncode != 0:
            sys.stderr.write("cohortd %s (status %s); its log:\n%s\n" % (
                "died during the tests" if died is not None else
                "did not stop cleanly", cls.proc.returncode,
                cls._log_text()))
        cls.log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def client(cls, role=None, **kw):
        return cohort.Client("127.0.0.1", cls.port, token=TOKENS.get(role),
                             timeout=10, **kw)

    # -- session and roles

    def test_hello_then_auth_gives_roles(self):
        with self.client() as c:
            self.assertTrue(c.server.auth_required)
            self.assertEqual(c.server.version, 1)
            self.assertGreater(c.server.max_batch, 0)
            self.assertEqual(c.role, "none")
        for role in ("read", "write", "admin"):
            with self.client(role) as c:
                self.assertEqual(c.role, role)

    def test_requests_before_auth_get_eauth(self):
        with self.client() as c:
            with self.assertRaises(CohortError) as cm:
                c.ping()
            self.assertEqual((cm.exception.code, cm.exception.name),
                             (-20, "EAUTH"))
            self.assertEqual(c.auth(TOKENS["read"]), "read")
            c.ping()

    def test_a_wrong_token_gets_eauth(self):
        with self.assertRaises(CohortError) as cm:
            cohort.Client("127.0.0.1", self.port, token="x" * 20, timeout=10)
        self.assertEqual(cm.exception.name, "EAUTH")

    def test_token_file(self):
        path = os.path.join(self.tmp, "mytoken")
        with open(path, "w") as f:
            f.write("# mine\n%s\n" % TOKENS["write"])
        os.chmod(path, 0o644)
        with self.assertRaises(CohortError) as cm:
            cohort.Client("127.0.0.1", self.port, token_file=path)
        self.assertIn("chmod 600", cm.exception.message)
        os.chmod(path, 0o600)
        with cohort.Client("127.0.0.1", self.port, token_file=path) as c:
            self.assertEqual(c.role, "write")

    def test_read_role_is_denied_writes_and_stays_open(self):
        with self.client("read") as c:
            for call in (lambda: c.put("people", "r1", {"age": 1}),
                         lambda: c.table_create("nope", [("a", "i32")]),
                         lambda: c.snapshot()):
                with self.assertRaises(CohortError) as cm:
                    call()
                self.assertEqual((cm.exception.code, cm.exception.name),
                                 (-21, "EDENIED"))
            c.ping()
            self.assertIsNone(c.get("people", "r1")["age"])

    def test_write_role_is_denied_admin_calls(self):
        with self.client("write") as c:
            with self.assertRaises(CohortError) as cm:
                c.index_create("people", "ix", "emb")
            self.assertEqual(cm.exception.name, "EDENIED")

    # -- schema

    def test_describe_tables_column_add_and_errors(self):
        with self.client("admin") as c:
            self.assertIn("people", c.tables())
            info = c.describe("people")
            self.assertEqual([col.name for col in info.columns][:3],
                             ["age", "income", "job"])
            self.assertEqual(info.column("emb").dim, 4)
            self.assertEqual(info.column("score").half_life_ms, 60000)
            c.table_create("extra", [("a", "i32")], ttl_ms=0)
            self.assertEqual(c.column_add("extra", ("b", "f64")), 1)
            c.put("extra", "k", {"b": 2.5})
            self.assertEqual(c.get("extra", "k")["b"], 2.5)
            with self.assertRaises(CohortError) as cm:
                c.table_create("extra", [("a", "i32")])
            self.assertEqual(cm.exception.name, "EEXIST")
            with self.assertRaises(CohortError) as cm:
                c.describe("no_such_table")
            self.assertEqual(cm.exception.name, "ENOTABLE")
            with self.assertRaises(CohortError) as cm:
                c.get("extra", "k", cols=["zz"])
            self.assertEqual(cm.exception.name, "ENOCOLUMN")
            for bad in ("bad name", "", "x" * 65):
                with self.assertRaises(CohortError) as cm:
                    c.table_create(bad, [("a", "i32")])
                self.assertEqual(cm.exception.name, "EBADNAME")
            with self.assertRaises(CohortError) as cm:
                c.column_add("extra", ("b-c", "i32"))
            self.assertEqual(cm.exception.name, "EBADNAME")
            c.ping()

    def test_columns_added_elsewhere_are_found(self):
        with self.client("admin") as a, self.client("admin") as b:
            a.table_create("grow", [("a", "i32")])
            b.put("grow", "k", {"a": 1})
            a.column_add("grow", ("c", "cat"))
            b.put("grow", "k", {"c": "hi"})
            self.assertEqual(dict(b.get("grow", "k")), {"a": 1, "c": "hi"})

    # -- writes and reads

    def test_put_get_every_type(self):
        with self.client("write") as c:
            v = np.array([0.5, -1, 2, 3], dtype=np.float32)
            c.put("people", "u1", {"age": 41, "income": 1234.5, "job": "admin",
                                   "vip": True, "emb": v, "w": 0.25},
                  time=1_700_000_000_000)
            row = c.get("people", "u1")
            self.assertEqual(row.status, cohort.ROW_PRESENT)
            self.assertEqual(row.time, 1_700_000_000_000)
            self.assertEqual((row["age"], row["income"], row["job"],
                              row["vip"], row["w"]),
                             (41, 1234.5, "admin", True, 0.25))
            self.assertEqual(row["emb"].dtype, np.float32)
            np.testing.assert_array_equal(row["emb"], v)
            self.assertIsNone(row["clicks"])
            self.assertEqual(dict(c.get("people", "u1", cols=["job", "age"])),
                             {"job": "admin", "age": 41})
            c.put("people", "u1", {"job": None})
            self.assertIsNone(c.get("people", "u1")["job"])
            missing = c.get("people", "nobody")
            self.assertEqual(missing.status, cohort.ROW_MISSING)
            self.assertTrue(all(x is None for x in missing.values()))

    def test_write_errors_carry_the_servers_code(self):
        with self.client("write") as c:
            with self.assertRaises(CohortError) as cm:
                c.put("people", "u2", {"emb": [1, 2, 3]})
            self.assertEqual((cm.exception.code, cm.exception.name),
                             (-8, "EDIM"))
            self.assertTrue(cm.exception.message)
            with self.assertRaises(CohortError) as cm:
                c.put("people", "u2", {"income": float("nan")})
            self.assertEqual(cm.exception.name, "ENAN")
            with self.assertRaises(CohortError) as cm:
                c.put("nope", "u2", {"a": 1})
            self.assertEqual(cm.exception.name, "ENOTABLE")
            with self.assertRaises(CohortError) as cm:
                c.delete("people", "never-there")
            self.assertEqual((cm.exception.code, cm.exception.name),
                             (-3, "ENOTFOUND"))
            res = c.put_many("people", [("ok1", {"age": 1}),
                                        ("bad", {"emb": [1.0]}),
                                        ("ok2", {"age": 2})])
            self.assertEqual(res.status.tolist(), [0, -8, 0])
            self.assertIn(1, res.errors)
            self.assertFalse(res.ok)
            self.assertEqual(res.error(1).name, "EDIM")

    def test_events_and_delete(self):
        with self.client("write") as c:
            c.event("people", "e1", [("clicks", "add", 2), ("age", "set", 5)])
            c.event("people", "e1", [("clicks", "observe", 1.5),
                                     ("age", "add", 3)])
            row = c.get("people", "e1", cols=["clicks", "age"])
            self.assertEqual((row["clicks"], row["age"]), (3.5, 8))
            c.event("people", "e1", [("score", "add", 4.0)])
            self.assertAlmostEqual(c.get("people", "e1")["score"], 4.0,
                                   delta=0.01)
            res = c.event_many("people", [("e2", [("age", "set", 1)]),
                                          ("e3", [("emb", "add", [1.0])])])
            self.assertEqual(res.status[0], 0)
            self.assertLess(res.status[1], 0)
            c.delete("people", "e1")
            self.assertEqual(c.get("people", "e1").status, cohort.ROW_MISSING)
            self.assertEqual(c.delete_many("people", ["e2", "e2"])
                             .status.tolist(), [0, -3])

    def test_get_many_gives_numpy_columns(self):
        with self.client("write") as c:
            keys = ["g%d" % i for i in range(5)]
            rows = []
            for i, k in enumerate(keys):
                fields = {"age": 20 + i, "income": i * 1.5, "vip": i % 2 == 0,
                          "emb": np.full(4, i, dtype=np.float32),
                          "w": i / 4}
                if i != 3:
                    fields["job"] = ["a", "b"][i % 2]
                rows.append((k, fields))
            c.put_many("people", rows).raise_for_status()
            c.event("people", "g1", [("clicks", "add", 7)])
            b = c.get_many("people", keys + ["absent"])
            self.assertEqual(len(b), 6)
            self.assertEqual(b.status.dtype, np.uint8)
            self.assertEqual(b.status.tolist(), [1, 1, 1, 1, 1, 0])
            self.assertEqual(b.time.dtype, np.int64)
            self.assertEqual(b["age"].dtype, np.int32)
            self.assertEqual(b["age"].tolist(), [20, 21, 22, 23, 24, 0])
            self.assertEqual(b["income"].dtype, np.float64)
            self.assertEqual(b["w"].dtype, np.float32)
            self.assertEqual(b["vip"].dtype, np.bool_)
            self.assertEqual(b["vip"][:5].tolist(),
                             [True, False, True, False, True])
            self.assertEqual(b["emb"].shape, (6, 4))
            self.assertEqual(b["emb"].dtype, np.float32)
            np.testing.assert_array_equal(b["emb"][:, 0], [0, 1, 2, 3, 4, 0])
            self.assertEqual(b["job"], ["a", "b", "a", None, "a", None])
            self.assertEqual(b["clicks"].dtype, np.float64)
            self.assertEqual(b.valid["clicks"].tolist(),
                             [False, True, False, False, False, False])
            self.assertEqual(b["clicks"][1], 7.0)
            self.assertEqual(b.valid["age"].tolist(), [True] * 5 + [False])
            sub = c.get_many("people", keys[:2], cols=["emb"])
            self.assertEqual(list(sub.columns), ["emb"])
            self.assertEqual(sub["emb"].shape, (2, 4))

    def test_filters(self):
        with self.client("admin") as c:
            c.table_create("fl", [("age", "i32"), ("job", "cat")])
            jobs = ["admin", "tech", "admin", None, "blue"]
            c.put_many("fl", [("f%d" % i, {"age": 25 + 5 * i, "job": j})
                              for i, j in enumerate(jobs)]).raise_for_status()
            self.assertEqual(c.filter_count("fl"), 5)
            self.assertEqual(c.filter_count("fl", F("age") > 30), 3)
            where = (F("age") > 30) & F("job").isin(["admin", "blue"])
            self.assertEqual(c.filter_count("fl", where), 2)
            count, keys = c.filter_list("fl", where, limit=1)
            self.assertEqual((count, len(keys)), (2, 1))
            self.assertIn(keys[0], ("f2", "f4"))
            self.assertEqual(sorted(c.filter_list("fl", where)[1]),
                             ["f2", "f4"])
            self.assertEqual(c.filter_count("fl", F("job") == None), 1)
            self.assertEqual(c.filter_count("fl", ~(F("job") == "admin")), 2)
            self.assertEqual(c.filter_count(
                "fl", (F("age") <= 30) | (F("age") >= 45)), 3)
            self.assertEqual(c.filter_count("fl", [("not_null", "job")]), 4)

    def test_knn_by_vector_and_key(self):
        with self.client("admin") as c:
            c.table_create("vecs", [("v", "vec", 3), ("g", "i32")])
            rng = np.random.default_rng(3)
            data = rng.normal(size=(50, 3)).astype(np.float32)
            c.put_many("vecs", [("v%d" % i, {"v": data[i], "g": i % 2})
                                for i in range(50)]).raise_for_status()
            c.index_create("vecs", "ix", "v", metric="l2")
            self.assertEqual(c.describe("vecs").indexes[0].name, "ix")
            near = c.knn("vecs", "ix", vector=data[7], k=5)
            self.assertEqual(near[0].key, "v7")
            self.assertAlmostEqual(near[0].distance, 0.0, places=5)
            exact = np.argsort(((data - data[7]) ** 2).sum(1))[:5]
            self.assertEqual([n.key for n in near],
                             ["v%d" % i for i in exact])
            by_key = c.knn("vecs", "ix", key="v7", k=4)
            self.assertEqual([n.key for n in by_key],
                             ["v%d" % i for i in exact[1:5]])
            keys, dist = c.knn("vecs", "ix", vector=data[7], k=5,
                               where=F("g") == 0, as_numpy=True)
            self.assertEqual(dist.dtype, np.float32)
            self.assertTrue(all(int(k[1:]) % 2 == 0 for k in keys))
            self.assertTrue(np.all(np.diff(dist) >= 0))
            with self.assertRaises(CohortError) as cm:
                c.knn("vecs", "ix", key="nobody", k=3)
            self.assertEqual(cm.exception.name, "ENOTFOUND")
            with self.assertRaises(CohortError) as cm:
                c.knn("vecs", "ix", vector=[1.0, 2.0], k=3)
            self.assertEqual(cm.exception.name, "EDIM")
            c.index_drop("vecs", "ix")
            self.assertEqual(c.describe("vecs").indexes, [])

    def test_bytes_keys_round_trip(self):
        with self.client("admin") as c:
            c.table_create("bk", [("a", "i32")])
            c.put("bk", b"\xff\x00k", {"a": 1})
            c.put("bk", "caf\u00e9", {"a": 2})
            self.assertEqual(c.get("bk", b"\xff\x00k")["a"], 1)
            self.assertEqual(sorted(c.filter_list("bk")[1], key=repr),
                             sorted([b"\xff\x00k", "caf\u00e9"], key=repr))

    def test_batches_over_max_batch_are_split(self):
        with self.client("write") as c:
            self.assertEqual(c.server.max_batch, MAX_BATCH)
            n = 2 * MAX_BATCH + 50
            keys = ["mb%d" % i for i in range(n)]
            res = c.put_many("people", [(k, {"age": i, "job": "j%d" % (i % 3)})
                                        for i, k in enumerate(keys)])
            self.assertEqual(len(res), n)
            self.assertTrue(res.ok)
            b = c.get_many("people", keys + ["absent"], cols=["age", "job"])
            self.assertEqual(b["age"].tolist(), list(range(n)) + [0])
            self.assertEqual(b["job"][:4] + b["job"][-2:],
                             ["j0", "j1", "j2", "j0", "j%d" % ((n - 1) % 3),
                              None])
            res = c.delete_many("people", keys[:-1] + ["absent"])
            self.assertEqual(res.status.tolist(), [0] * (n - 1) + [-3])
            self.assertEqual(list(res.errors), [n - 1])
            with self.assertRaises(CohortError) as cm:
                c.knn("people", "no_index", key="x", k=5000)
            self.assertIn(cm.exception.name, ("ELIMIT", "ENOTFOUND"))

    # -- personas

    def test_persona_train_sizes_assign_members(self):
        with self.client("read") as c:
            sizes = c.persona_sizes("pts", "m")
            self.assertEqual(sizes.k, 2)
            self.assertEqual(sorted(sizes.sizes.tolist()), [20, 20])
            self.assertEqual(sizes.version, self.version)
            model = c.describe("pts").models[0]
            self.assertEqual((model.name, model.k, model.columns),
                             ("m", 2, ["x", "y"]))
            a = c.persona_assign("pts", "m", key="p0", m=2)
            self.assertEqual(a.status, cohort.ROW_PRESENT)
            self.assertEqual(len(a.nearest), 2)
            self.assertEqual(a.nearest[0][0], a.persona)
            far = c.persona_assign("pts", "m", values=[10.0, 10.0])
            self.assertNotEqual(far.persona, a.persona)
            self.assertEqual(c.persona_assign("pts", "m", key="nobody").status,
                             cohort.ROW_MISSING)
            count, keys = c.persona_members("pts", "m", a.persona, limit=5)
            self.assertEqual((count, len(keys)), (20, 5))
            self.assertTrue(all(int(k[1:]) < 20 for k in keys))
            self.assertEqual(c.filter_count("pts", Persona("m", a.persona)
                                            & (F("x") > 5)), 0)
            count, _ = c.persona_members("pts", "m", far.persona,
                                         where=F("x") > 5)
            self.assertEqual(count, 20)

    def test_persona_describe_centroids_are_member_means(self):
        with self.client("read") as c:
            d = c.persona_describe("pts", "m")
            self.assertEqual((d["version"], d["k"], d["dim"], d["mode"]),
                             (self.version, 2, 2, "at_once"))
            self.assertFalse(d["training"])
            self.assertEqual(d["assigned"], 40)
            ids = [c.describe("pts").column(n).id for n in ("x", "y")]
            self.assertEqual(d["columns"], ids)
            self.assertEqual(d["names"], ["", ""])
            self.assertEqual(d["centroids"].shape, (2, 2))
            self.assertEqual(d["centroids"].dtype, np.float64)
            self.assertEqual(sorted(d["sizes"].tolist()), [20, 20])
            self.assertTrue(np.all(d["typical"] > 0))
            # a trained centroid is the mean of its members (input units)
            for p in range(2):
                _, keys = c.persona_members("pts", "m", p, limit=100)
                b = c.get_many("pts", keys, cols=["x", "y"])
                want = [float(np.mean(b["x"])), float(np.mean(b["y"]))]
                np.testing.assert_allclose(d["centroids"][p], want,
                                           atol=1e-3)
            with self.assertRaises(CohortError) as cm:
                c.persona_describe("pts", "nomodel")
            self.assertEqual(cm.exception.name, "ENOTFOUND")

    def test_persona_upload_and_retrain(self):
        with self.client("admin") as c:
            v = c.persona_upload("pts", "up", ["x", "y"],
                                 np.array([[-1, -1], [1, 1]], np.float32),
                                 mean=[5.0, 5.0], sd=[5.0, 5.0])
            self.assertGreaterEqual(v, 1)
            sizes = c.persona_sizes("pts", "up")
            self.assertEqual(sorted(sizes.sizes.tolist()), [20, 20])
            self.assertGreater(c.persona_train("pts", "up", k=2, seed=1), v)
            with self.assertRaises(CohortError) as cm:
                c.persona_upload("pts", "up2", ["x", "y"],
                                 np.zeros((2, 3), np.float32))
            self.assertLess(cm.exception.code, 0)

    def test_subscription_pushes_changes(self):
        with self.client("admin") as c, self.client("write") as w:
            c.table_create("subs", [("x", "f64")])
            # 20 rows: under 16, training leaves a persona empty (store bug)
            w.put_many("subs", [("s%d" % i, {"x": float(i % 2) * 10})
                                for i in range(20)]).raise_for_status()
            c.persona_train("subs", "m", ["x"], k=2, seed=3)
            sub = c.subscribe("subs", "m")
            self.assertIsInstance(sub.cursor, int)
            before = c.persona_assign("subs", "m", key="s0").persona
            w.put("subs", "s0", {"x": 10.0})     # s0 changes persona
            # a call on the subscribing connection while the push arrives
            self.assertEqual(c.get("subs", "s0")["x"], 10.0)
            got = []
            deadline = time.monotonic() + 3
            while not got and time.monotonic() < deadline:
                got = [ch for ch in sub.poll(0.5) if ch.key == "s0"]
            self.assertTrue(got, "no CHANGES push for s0")
            self.assertEqual(got[0].old_persona, before)
            self.assertNotEqual(got[0].new_persona, before)
            w.put("subs", "s1", {"x": 0.0})
            first = next(iter(sub.changes(3)))
            self.assertEqual(first.key, "s1")
            sub.close()
            self.assertEqual(sub.poll(0.1), [])
            c.ping()

    # -- pipelining

    def test_pipeline_of_1000_requests(self):
        with self.client("write") as c:
            with c.pipeline() as p:
                puts = [p.put("people", "pl%d" % i, {"age": i})
                        for i in range(500)]
            self.assertTrue(all(x.result() is None for x in puts))
            with c.pipeline() as p:
                gets = [p.get("people", "pl%d" % i, cols=["age"])
                        for i in range(1000)]
            self.assertEqual([g.result()["age"] for g in gets],
                             [i if i < 500 else None for i in range(1000)])
            self.assertEqual(len(p.results), 1000)

    def test_pipeline_errors_stay_in_place(self):
        with self.client("write") as c:
            c.put("people", "pe1", {"age": 1})
            with c.pipeline(raise_errors=False) as p:
                a = p.ping()
                b = p.delete("people", "not-there-at-all")
                d = p.get("people", "pe1", cols=["age"])
                p.describe("people")
            self.assertIsNone(a.result())
            self.assertEqual(b.exception().name, "ENOTFOUND")
            with self.assertRaises(CohortError):
                b.result()
            self.assertEqual(d.result()["age"], 1)
            self.assertIsInstance(p.results[1], CohortError)
            self.assertIsInstance(p.results[3], cohort.TableInfo)
            with self.assertRaises(CohortError) as cm:
                with c.pipeline() as p:
                    p.delete("people", "not-there-at-all")
                    e = p.get("people", "pe1", cols=["age"])
            self.assertEqual(cm.exception.name, "ENOTFOUND")
            self.assertEqual(e.result()["age"], 1)
            c.ping()

    # -- operations and failures

    def test_snapshot_and_stats(self):
        with self.client("admin") as c:
            c.snapshot()
            stats = c.stats()
            self.assertIsInstance(stats["io_path"], str)
            self.assertTrue(any(isinstance(v, int) and k != "io_path"
                                for k, v in stats.items()))

    def test_malformed_frame_closes_the_connection(self):
        c = self.client("read")
        c._sock.sendall(b"XX" + bytes(14))
        with self.assertRaises((CohortError, ConnectionError)) as cm:
            c.ping()
        if isinstance(cm.exception, CohortError):
            self.assertEqual(cm.exception.name, "EPROTO")
        with self.assertRaises(ConnectionClosed):
            c.ping()


if __name__ == "__main__":
    if not os.access(COHORTD, os.X_OK):
        sys.stderr.write("test_cohort: %s is not built: the server tests "
                         "are skipped (frame tests still run)\n" % COHORTD)
    unittest.main(verbosity=2)
