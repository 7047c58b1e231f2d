"""cohort.py -- a Python client for cohortd, written from docs/protocol.md.

One module, the standard library and numpy. A Client holds one TCP
connection: it says HELLO on connect (learning the server's limits), then
AUTH when given a token, and turns each call into one request frame and its
response. Column names are resolved to column ids through DESCRIBE, cached
per table and refreshed when a name or id is not in the cache.

Results: get() gives a Row (a dict with .status and .time); get_many() a
Batch of numpy arrays, one per column, decoded straight from the columnar
block (vec columns as (n, dim) float32, cat columns as lists of str);
knn() a list of (key, distance); writes raise CohortError when their row
failed, and the *_many forms give a BatchResult with one status per row.

Errors: a negative status raises CohortError (.code, .name, .message); a
lost connection raises ConnectionClosed, a ConnectionError. Bad input that
cannot be encoded (a key over 255 bytes, a str for an i32 column, a name
outside [A-Za-z0-9_]{1,64}) raises CohortError before anything is sent.
After a protocol error, a lost connection or a wait past the client's
timeout the connection is dropped (the stream may be out of step) and
every later call raises ConnectionClosed; open a new Client.

Value types: put and event send each value in its column's type (as
cohort.h's cohort_put accepts it; aggregates take f64); filters and ad-hoc
persona inputs send int as i64, float as f64, bool, str as cat.

Pipelining: inside `with client.pipeline() as p:` calls are queued and
return Pending objects; leaving the block sends them all, reads the
responses in order (sending and reading at once, so a long pipeline never
deadlocks on full socket buffers) and fills the Pendings.

Subscriptions: subscribe() returns a Subscription; the server's CHANGES
pushes for it are queued as they arrive (also while other calls run) and
read with poll(), changes() or by iterating it.

Keys are str (sent as UTF-8) or bytes; keys coming back are str when they
are valid UTF-8, else bytes. Times are int milliseconds since the Unix
epoch or datetime objects; None means the server's clock now.

A Client is not thread-safe: use one per thread.
"""

import collections
import datetime
import operator
import re
import select
import os
import socket
import stat
import struct
import time as _time

import numpy as np

__all__ = [
    "Client", "CohortError", "ConnectionClosed", "F", "Persona", "Row",
    "Batch", "BatchResult", "Pending", "Subscription", "encode_frame",
    "decode_header", "PROTOCOL_VERSION", "PERSONA_NONE", "FROM_NOW",
]

PROTOCOL_VERSION = 1
HEADER_LEN = 16
MAGIC = b"CH"
FLAG_RESPONSE = 1
FLAG_PUSH = 2
NOW = -(1 << 63)                 # time: the server's clock now
PERSONA_NONE = 0xFFFFFFFF
FROM_NOW = 0xFFFFFFFFFFFFFFFF    # subscribe cursor: changes from now on

OP = {
    "HELLO": 0x01, "AUTH": 0x02, "PING": 0x03,
    "TABLE_CREATE": 0x10, "COLUMN_ADD": 0x11, "DESCRIBE": 0x12,
    "INDEX_CREATE": 0x13, "INDEX_DROP": 0x14,
    "PUT": 0x20, "EVENT": 0x21, "DELETE": 0x22,
    "GET": 0x30, "GET_MANY": 0x31, "FILTER_COUNT": 0x32, "FILTER_LIST": 0x33,
    "KNN": 0x40,
    "PERSONA_ASSIGN": 0x50, "PERSONA_MEMBERS": 0x51, "PERSONA_SIZES": 0x52,
    "PERSONA_TRAIN": 0x53, "PERSONA_UPLOAD": 0x54, "SUBSCRIBE": 0x55,
    "UNSUBSCRIBE": 0x56, "CHANGES": 0x57, "PERSONA_DESCRIBE": 0x58,
    "SNAPSHOT": 0x60, "STATS": 0x61,
}

STATUS = {
    0: "OK", -1: "EINVAL", -2: "ENOMEM", -3: "ENOTFOUND", -4: "ENOTABLE",
    -5: "ENOCOLUMN", -6: "EEXIST", -7: "ETYPE", -8: "EDIM", -9: "EKEY",
    -10: "ENAN", -11: "EOP", -12: "ERANGE", -13: "ELIMIT", -14: "ENOTSUP",
    -15: "EIO", -16: "ECORRUPT", -17: "EBADNAME", -18: "EBUSY",
    -19: "EPROTO", -20: "EAUTH", -21: "EDENIED", -22: "ECLOSED",
}
_CODE = {name: code for code, name in STATUS.items()}

TYPES = ("null", "f32", "f64", "i32", "i64", "bool", "cat", "vec",
         "counter", "decay", "min", "max", "last")
_TYPE = {name: code for code, name in enumerate(TYPES)}
_AGGREGATES = (8, 9, 10, 11, 12)
ROLES = ("none", "read", "write", "admin")   # u8 role codes, see the report
METRICS = ("l2", "ip", "cosine")
MODES = ("at_once", "background")
EVENT_OPS = {"set": 1, "add": 2, "observe": 3}
ROW_STATUS = ("missing", "present", "expired")
ROW_MISSING, ROW_PRESENT, ROW_EXPIRED = 0, 1, 2

# GET_MANY value widths and numpy dtypes by value type (vec: 4 x dim)
_BLOCK_DTYPE = {1: "<f4", 2: "<f8", 3: "<i4", 4: "<i8", 5: "u1", 6: "<u4"}

_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")
_HDR = struct.Struct("<2sBBHHII")
_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
_I32, _I64 = struct.Struct("<i"), struct.Struct("<q")
_F32, _F64 = struct.Struct("<f"), struct.Struct("<d")


class CohortError(Exception):
    """A request failed: .code is the negative status, .name its name
    ("ENOTFOUND"), .message the server's explanation."""

    def __init__(self, code, message=""):
        self.code = code
        self.name = STATUS.get(code, "E%d" % -code)
        self.message = message
        super().__init__("%s: %s" % (self.name, message) if message
                         else self.name)


class ConnectionClosed(ConnectionError):
    """The connection is gone (code ECLOSED): the server closed it, or the
    client did after a protocol error."""

    code = _CODE["ECLOSED"]
    name = "ECLOSED"


def _err(name, message):
    return CohortError(_CODE[name], message)


# ---- frames ---------------------------------------------------------------

def encode_frame(opcode, request_id, body=b"", flags=0):
    """The bytes of one frame: the 16-byte header, then body."""
    return _HDR.pack(MAGIC, PROTOCOL_VERSION, opcode, flags, 0,
                     request_id, len(body)) + bytes(body)


def decode_header(buf, offset=0):
    """(opcode, flags, request_id, body_len) of the header at buf[offset:];
    CohortError(EPROTO) when its magic, version or reserved bytes are
    wrong."""
    if len(buf) - offset < HEADER_LEN:
        raise _err("EPROTO", "short frame header")
    magic, version, opcode, flags, reserved, rid, body_len = \
        _HDR.unpack_from(buf, offset)
    if magic != MAGIC:
        raise _err("EPROTO", "bad magic %r" % bytes(magic))
    if version != PROTOCOL_VERSION:
        raise _err("EPROTO", "protocol version %d, expected %d"
                   % (version, PROTOCOL_VERSION))
    if reserved != 0 or flags & ~(FLAG_RESPONSE | FLAG_PUSH):
        raise _err("EPROTO", "reserved header bits set")
    return opcode, flags, rid, body_len


class _W:
    """A request body being written."""

    __slots__ = ("b",)

    def __init__(self):
        self.b = bytearray()

    def u8(self, v):
        self.b += _U8.pack(v)

    def u16(self, v):
        self.b += _U16.pack(v)

    def u32(self, v):
        self.b += _U32.pack(v)

    def u64(self, v):
        self.b += _U64.pack(v)

    def i32(self, v):
        self.b += _I32.pack(v)

    def i64(self, v):
        self.b += _I64.pack(v)

    def f32(self, v):
        self.b += _F32.pack(v)

    def f64(self, v):
        self.b += _F64.pack(v)

    def str8(self, s, what="string"):
        if isinstance(s, str):
            s = s.encode("utf-8")
        if len(s) > 255:
            raise _err("EINVAL", "%s is %d bytes, at most 255"
                       % (what, len(s)))
        self.b += _U8.pack(len(s)) + s

    def str16(self, s, what="string"):
        if isinstance(s, str):
            s = s.encode("utf-8")
        if len(s) > 0xFFFF:
            raise _err("ERANGE", "%s is %d bytes" % (what, len(s)))
        self.b += _U16.pack(len(s)) + s

    def name(self, s, what="name"):
        # checked here: cohortd takes a bad name for a malformed frame
        # (EPROTO) and closes the connection
        if not isinstance(s, str) or not _NAME.match(s):
            raise _err("EBADNAME", "%s name %r: 1 to 64 characters of "
                       "[A-Za-z0-9_]" % (what, s))
        self.b += _U8.pack(len(s)) + s.encode("ascii")

    def key(self, k):
        self.b += _key_bytes(k, True)

    def time(self, t):
        self.i64(_time_ms(t))

    def floats(self, v, what="vector"):
        a = _vector(v, what)
        self.u32(a.shape[0])
        self.b += a.tobytes()


def _key_bytes(k, with_len=False):
    if isinstance(k, str):
        b = k.encode("utf-8")
    elif isinstance(k, (bytes, bytearray, memoryview)):
        b = bytes(k)
    else:
        raise _err("EKEY", "a key is str or bytes, not %s" % type(k).__name__)
    if not 1 <= len(b) <= 255:
        raise _err("EKEY", "key must be 1 to 255 bytes, got %d" % len(b))
    return bytes((len(b),)) + b if with_len else b


def _key_out(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(b)


def _time_ms(t):
    if t is None:
        return NOW
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        return int(t.timestamp() * 1000)
    try:
        v = operator.index(t)
    except TypeError:
        raise _err("EINVAL", "a time is int milliseconds or a datetime, not %s"
                   % type(t).__name__) from None
    if not -(1 << 63) <= v < (1 << 63):
        raise _err("ERANGE", "time %d out of range" % v)
    return v


def _vector(v, what="vector"):
    try:
        a = np.asarray(v, dtype="<f4")
    except (TypeError, ValueError) as e:
        raise _err("ETYPE", "%s: not a vector of numbers (%s)" % (what, e)) \
            from None
    if a.ndim != 1:
        raise _err("EDIM", "%s must be 1-dimensional, got shape %s"
                   % (what, a.shape))
    return a


def _int_in(v, bits, what):
    if isinstance(v, (float, np.floating)):
        raise _err("ETYPE", "%s: %r is not an integer" % (what, v))
    try:
        i = operator.index(v)
    except TypeError:
        raise _err("ETYPE", "%s: %r is not an integer" % (what, v)) from None
    if not -(1 << (bits - 1)) <= i < (1 << (bits - 1)):
        raise _err("ERANGE", "%s: %d does not fit in i%d" % (what, i, bits))
    return i


def _float_of(v, what):
    if isinstance(v, (str, bytes)) or v is None:
        raise _err("ETYPE", "%s: %r is not a number" % (what, v))
    try:
        return float(v)
    except (TypeError, ValueError):
        raise _err("ETYPE", "%s: %r is not a number" % (what, v)) from None


def _enc_value(w, ctype, v, what):
    """A value for a column of type ctype, in the column's own type
    (aggregates take f64)."""
    if v is None:
        w.u8(0)
    elif ctype in _AGGREGATES or ctype == 2:
        w.u8(2)
        w.f64(_float_of(v, what))
    elif ctype == 1:
        f = _float_of(v, what)
        try:
            packed = _F32.pack(f)
        except OverflowError:
            raise _err("ERANGE", "%s: %r does not fit in f32" % (what, v)) \
                from None
        w.u8(1)
        w.b += packed
    elif ctype == 3:
        w.u8(3)
        w.i32(_int_in(v, 32, what))
    elif ctype == 4:
        w.u8(4)
        w.i64(_int_in(v, 64, what))
    elif ctype == 5:
        if isinstance(v, (bool, np.bool_)) or v in (0, 1):
            w.u8(5)
            w.u8(1 if v else 0)
        else:
            raise _err("ETYPE", "%s: %r is not a bool" % (what, v))
    elif ctype == 6:
        if not isinstance(v, (str, bytes)):
            raise _err("ETYPE", "%s: %r is not a str" % (what, v))
        w.u8(6)
        w.str16(v, what)
    elif ctype == 7:
        w.u8(7)
        w.floats(v, what)
    else:
        _enc_auto(w, v, what)


def _enc_auto(w, v, what):
    """A value typed by its Python type (filters, ad-hoc persona inputs):
    int as i64, float as f64, bool, str as cat, arrays as vec."""
    if v is None:
        w.u8(0)
    elif isinstance(v, (bool, np.bool_)):
        w.u8(5)
        w.u8(1 if v else 0)
    elif isinstance(v, (int, np.integer)):
        w.u8(4)
        w.i64(_int_in(v, 64, what))
    elif isinstance(v, (float, np.floating)):
        w.u8(2)
        w.f64(float(v))
    elif isinstance(v, (str, bytes)):
        w.u8(6)
        w.str16(v, what)
    else:
        w.u8(7)
        w.floats(v, what)


class _R:
    """A response body being read; any read past its end, or bytes left
    over at the end, make it malformed."""

    __slots__ = ("buf", "off")

    def __init__(self, buf, off=0):
        self.buf = buf
        self.off = off

    def _at(self, n):
        o = self.off
        if o + n > len(self.buf):
            raise _err("EPROTO", "response body too short")
        self.off = o + n
        return o

    def u8(self):
        return self.buf[self._at(1)]

    def u16(self):
        return _U16.unpack_from(self.buf, self._at(2))[0]

    def u32(self):
        return _U32.unpack_from(self.buf, self._at(4))[0]

    def u64(self):
        return _U64.unpack_from(self.buf, self._at(8))[0]

    def i32(self):
        return _I32.unpack_from(self.buf, self._at(4))[0]

    def i64(self):
        return _I64.unpack_from(self.buf, self._at(8))[0]

    def f32(self):
        return _F32.unpack_from(self.buf, self._at(4))[0]

    def f64(self):
        return _F64.unpack_from(self.buf, self._at(8))[0]

    def raw(self, n):
        o = self._at(n)
        return bytes(self.buf[o:o + n])

    def str8(self):
        return self.raw(self.u8())

    def text8(self):
        return self.str8().decode("utf-8", "replace")

    def text16(self):
        return self.raw(self.u16()).decode("utf-8", "replace")

    def array(self, dtype, n):
        dt = np.dtype(dtype)
        o = self._at(dt.itemsize * n)
        return np.frombuffer(self.buf, dtype=dt, count=n, offset=o)

    def value(self):
        t = self.u8()
        if t == 0:
            return None
        if t == 1:
            return self.f32()
        if t == 2:
            return self.f64()
        if t == 3:
            return self.i32()
        if t == 4:
            return self.i64()
        if t == 5:
            b = self.u8()
            if b > 1:
                raise _err("EPROTO", "bool value %d" % b)
            return b == 1
        if t == 6:
            return self.text16()
        if t == 7:
            return self.array("<f4", self.u32()).copy()
        raise _err("EPROTO", "unknown value type %d" % t)

    def end(self):
        if self.off != len(self.buf):
            raise _err("EPROTO", "%d bytes left over in a response"
                       % (len(self.buf) - self.off))


# ---- results --------------------------------------------------------------

Column = collections.namedtuple(
    "Column", "id name type dim half_life_ms ncat")
Model = collections.namedtuple(
    "Model", "name version k dim columns mode training pending assigned")
Index = collections.namedtuple(
    "Index", "name column metric M ef_construction ef_search nodes pending "
    "bytes")
Neighbor = collections.namedtuple("Neighbor", "key distance")
Change = collections.namedtuple(
    "Change", "seq time version old_persona new_persona key")
Feature = collections.namedtuple(
    "Feature", "column element value centroid contribution")
Assignment = collections.namedtuple(
    "Assignment", "status version persona distance anomaly nearest explain")
Sizes = collections.namedtuple("Sizes", "version k sizes names")
ServerInfo = collections.namedtuple(
    "ServerInfo", "version max_frame max_batch max_k auth_required role "
    "name")


class TableInfo:
    """DESCRIBE of one table. columns are in id order; model and index
    columns are given as names."""

    def __init__(self, name, ttl_ms, nrows, mem_bytes, columns, models,
                 indexes):
        self.name, self.ttl_ms, self.nrows = name, ttl_ms, nrows
        self.mem_bytes, self.columns = mem_bytes, columns
        self.models, self.indexes = models, indexes
        self._by_name = {c.name: c for c in columns}

    def column(self, ref):
        """The Column for a name or an id; None when there is none."""
        if isinstance(ref, str):
            return self._by_name.get(ref)
        if isinstance(ref, (int, np.integer)) and 0 <= ref < len(self.columns):
            return self.columns[ref]
        return None

    def __repr__(self):
        return ("TableInfo(%r, nrows=%d, columns=%r, models=%r, indexes=%r)"
                % (self.name, self.nrows, [c.name for c in self.columns],
                   [m.name for m in self.models],
                   [i.name for i in self.indexes]))


class Row(dict):
    """GET: column name -> value (None for null; all None unless the row
    is present). .status is 0 missing, 1 present, 2 expired; .time the
    row's event time."""

    def __init__(self, values, status, time):
        super().__init__(values)
        self.status = status
        self.time = time

    @property
    def present(self):
        return self.status == ROW_PRESENT

    def __repr__(self):
        return "Row(%s, status=%s, time=%d)" % (
            dict.__repr__(self), ROW_STATUS[self.status]
            if self.status < 3 else self.status, self.time)


class Batch:
    """GET_MANY: one numpy array per column, indexed by key position.
    batch[name] is the values: f32/f64/i32/i64 arrays, bool as a bool
    array, vec as an (n, dim) float32 array, cat as a list of str (None
    where null). A null's numeric value is 0: see batch.valid[name].
    .status (uint8: 0 missing, 1 present, 2 expired) and .time (int64)
    are per key."""

    def __init__(self, keys, status, time, columns, valid, types):
        self.keys = keys
        self.status = status
        self.time = time
        self.columns = columns
        self.valid = valid
        self.types = types

    def __getitem__(self, name):
        return self.columns[name]

    def __contains__(self, name):
        return name in self.columns

    def __len__(self):
        return len(self.status)

    def __repr__(self):
        return "Batch(%d keys, columns=%r)" % (len(self), list(self.columns))

    @classmethod
    def concat(cls, parts):
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        columns, valid = {}, {}
        for name in first.columns:
            if isinstance(first.columns[name], list):
                columns[name] = [v for p in parts for v in p.columns[name]]
            else:
                columns[name] = np.concatenate([p.columns[name]
                                                for p in parts])
            valid[name] = np.concatenate([p.valid[name] for p in parts])
        return cls([k for p in parts for k in p.keys],
                   np.concatenate([p.status for p in parts]),
                   np.concatenate([p.time for p in parts]),
                   columns, valid, first.types)


class BatchResult:
    """The result of a batch write: .status, one int32 per row (0 or a
    negative code), and .errors, row -> the server's message."""

    def __init__(self, status, errors):
        self.status = status
        self.errors = errors

    @property
    def ok(self):
        return not np.any(self.status)

    def __len__(self):
        return len(self.status)

    def error(self, row):
        """The CohortError of a failed row, None when the row succeeded."""
        code = int(self.status[row])
        return CohortError(code, self.errors.get(row, "")) if code else None

    def raise_for_status(self):
        """Raise the first failed row's CohortError."""
        bad = np.flatnonzero(self.status)
        if len(bad):
            raise self.error(int(bad[0]))

    def __repr__(self):
        return "BatchResult(%d rows, %d failed)" % (
            len(self.status), int(np.count_nonzero(self.status)))

    @classmethod
    def concat(cls, parts):
        if len(parts) == 1:
            return parts[0]
        errors, base = {}, 0
        for p in parts:
            errors.update({base + r: m for r, m in p.errors.items()})
            base += len(p.status)
        return cls(np.concatenate([p.status for p in parts]), errors)


# ---- filters --------------------------------------------------------------

_CMP = {"eq": 1, "ne": 2, "lt": 3, "le": 4, "gt": 5, "ge": 6}


class Expr:
    """A filter expression; combine with & | ~ (parenthesise comparisons:
    (F("age") > 30) & F("job").isin(["admin"]))."""

    def __and__(self, other):
        return _Logic("and", self, _as_expr(other))

    def __or__(self, other):
        return _Logic("or", self, _as_expr(other))

    def __invert__(self):
        return _Logic("not", self)

    def __rand__(self, other):
        raise TypeError("filter: %r & <filter>: put comparisons in "
                        "parentheses, (F('x') > 1) & ..." % (other,))

    __ror__ = __rand__

    def __bool__(self):
        raise TypeError("a filter has no truth value: combine with & | ~ "
                        "(not and/or/not), and do not chain comparisons")

    def nodes(self, column_id=lambda c: c):
        """The filter as its node list (the wire's order: operands first,
        the root last), columns mapped through column_id."""
        out = []
        self._emit(out, column_id)
        return out


def _as_expr(x):
    if not isinstance(x, Expr):
        raise TypeError("filter: %r is not a filter expression" % (x,))
    return x


class _Leaf(Expr):
    def __init__(self, node):
        self.node = node

    def _emit(self, out, column_id):
        n = self.node
        if n[0] in ("cmp", "in", "is_null", "not_null"):
            n = (n[0], column_id(n[1])) + n[2:]
        out.append(n)
        return len(out) - 1


class _Logic(Expr):
    def __init__(self, kind, a, b=None):
        self.kind, self.a, self.b = kind, a, b

    def _emit(self, out, column_id):
        a = self.a._emit(out, column_id)
        if self.kind == "not":
            out.append(("not", a))
        else:
            b = self.b._emit(out, column_id)
            out.append((self.kind, a, b))
        return len(out) - 1


class F:
    """A column in a filter: F("age") > 30, F("job") == "admin",
    F("job").isin(["admin", "blue-collar"]), F("x").is_null(),
    F("x") == None (is null), F("x") != None (not null)."""

    __hash__ = None

    def __init__(self, column):
        self.column = column

    def _cmp(self, op, v):
        if isinstance(v, (F, Expr)):
            raise TypeError("filter: a column compares with a value, "
                            "not with %r" % (v,))
        return _Leaf(("cmp", self.column, op, v))

    def __eq__(self, v):
        return self.is_null() if v is None else self._cmp("eq", v)

    def __ne__(self, v):
        return self.not_null() if v is None else self._cmp("ne", v)

    def __lt__(self, v):
        return self._cmp("lt", v)

    def __le__(self, v):
        return self._cmp("le", v)

    def __gt__(self, v):
        return self._cmp("gt", v)

    def __ge__(self, v):
        return self._cmp("ge", v)

    def isin(self, values):
        if isinstance(values, (str, bytes)):
            values = [values]
        return _Leaf(("in", self.column, list(values)))

    def is_null(self):
        return _Leaf(("is_null", self.column))

    def not_null(self):
        return _Leaf(("not_null", self.column))


def Persona(model, persona):
    """Filter leaf: the row is in persona `persona` of model `model`."""
    return _Leaf(("persona", model, persona))


def _enc_nodes(w, nodes):
    w.u16(len(nodes))
    for i, n in enumerate(nodes):
        kind = n[0]
        what = "filter node %d" % i
        if kind == "cmp":
            w.u8(1)
            w.u16(n[1])
            op = _CMP[n[2]] if isinstance(n[2], str) else n[2]
            w.u8(op)
            _enc_auto(w, n[3], what)
        elif kind == "in":
            w.u8(2)
            w.u16(n[1])
            w.u16(len(n[2]))
            for v in n[2]:
                if not isinstance(v, (str, bytes)):
                    raise _err("ETYPE", "%s: isin takes strings, not %r"
                               % (what, v))
                w.u8(6)
                w.str16(v, what)
        elif kind == "is_null":
            w.u8(3)
            w.u16(n[1])
        elif kind == "not_null":
            w.u8(4)
            w.u16(n[1])
        elif kind in ("and", "or"):
            w.u8(5 if kind == "and" else 6)
            w.u16(n[1])
            w.u16(n[2])
        elif kind == "not":
            w.u8(7)
            w.u16(n[1])
        elif kind == "persona":
            w.u8(8)
            w.name(n[1], "model")
            w.u32(n[2])
        else:
            raise _err("EINVAL", "%s: unknown kind %r" % (what, kind))


# ---- pipelining -----------------------------------------------------------

class _Post:
    """A decoded response that still needs column names: finished after the
    exchange, when a DESCRIBE may be sent (never in the middle of one)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class Pending:
    """The result of a queued call, filled when its pipeline runs."""

    __slots__ = ("_done", "_value", "_error")

    def __init__(self):
        self._done = False
        self._value = None
        self._error = None

    def _set(self, value, error):
        self._done, self._value, self._error = True, value, error

    @property
    def done(self):
        return self._done

    def result(self):
        if not self._done:
            raise _err("EINVAL", "the pipeline has not run yet")
        if self._error is not None:
            raise self._error
        return self._value

    def exception(self):
        return self._error


class _Combined(Pending):
    """A call split into several requests (a batch over max_batch)."""

    __slots__ = ("parts", "combine")

    def __init__(self, parts, combine):
        super().__init__()
        self.parts, self.combine = parts, combine

    def _finish(self):
        errs = [p._error for p in self.parts if p._error is not None]
        if errs:
            self._set(None, errs[0])
            return
        try:
            self._set(self.combine([p._value for p in self.parts]), None)
        except CohortError as e:
            self._set(None, e)


class Pipeline:
    """Queue calls, then send them together and read the responses in
    order. Use as `with client.pipeline() as p:`; p has the client's
    methods, which queue and return Pending objects (so do the client's own
    methods while the block runs). Leaving the block runs execute(); or
    call p.execute() yourself, as often as you like."""

    def __init__(self, client, raise_errors=True):
        self._client = client
        self.raise_errors = raise_errors
        self._queue = []          # (frame, decode, Pending)
        self._tops = []           # the Pending of each call, in order
        self._combined = []
        self.results = None

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def queued(*args, **kwargs):
            c = self._client
            was = c._pipe
            if was is not None and was is not self:
                raise _err("EINVAL", "another pipeline is open")
            c._pipe = self
            try:
                return attr(*args, **kwargs)
            finally:
                c._pipe = was
        return queued

    def __enter__(self):
        if self._client._pipe is not None:
            raise _err("EINVAL", "pipelines do not nest")
        self._client._pipe = self
        return self

    def __exit__(self, etype, exc, tb):
        self._client._pipe = None
        if etype is None:
            self.execute(self.raise_errors)
        else:
            self._queue.clear()
        return False

    def execute(self, raise_errors=True):
        """Send what is queued and read every response. Returns the
        results in call order (a failed call's CohortError in its place
        when raise_errors is false; else the first error is raised once
        all responses are read)."""
        c = self._client
        was = c._pipe
        c._pipe = None
        queue, self._queue = self._queue, []
        try:
            if queue:
                c._exchange(queue)
        finally:
            c._pipe = was
        for comb in self._combined:
            comb._finish()
        tops = self._tops
        self._tops, self._combined = [], []
        self.results = [p._error if p._error is not None else p._value
                        for p in tops]
        if raise_errors:
            for p in tops:
                if p._error is not None:
                    raise p._error
        return self.results

    def _add(self, frames_decodes, combine):
        parts = []
        for frame, decode in frames_decodes:
            p = Pending()
            self._queue.append((frame, decode, p))
            parts.append(p)
        if len(parts) == 1 and combine is None:
            top = parts[0]
        else:
            top = _Combined(parts, combine or (lambda vs: vs[0]))
            self._combined.append(top)
        self._tops.append(top)
        return top


# ---- subscriptions --------------------------------------------------------

class Subscription:
    """A subscription to a persona model's changes. Iterate it (blocks for
    ever), or use poll(timeout) / changes(timeout). .lost counts the
    changes the server dropped before they were read."""

    def __init__(self, client, table, model, request_id):
        self._client = client
        self.table, self.model = table, model
        self.request_id = request_id
        self.cursor = None        # where it started (the SUBSCRIBE answer)
        self.lost = 0
        self.active = True
        self._queue = collections.deque()

    def _push(self, body):
        r = _R(body)
        status = r.i32()
        if status < 0:
            self._queue.append(CohortError(status, r.text16()))
            return
        self.lost += r.u64()
        for _ in range(r.u32()):
            seq, t, version = r.u64(), r.i64(), r.u64()
            old, new = r.u32(), r.u32()
            self._queue.append(Change(seq, t, version, old, new,
                                      _key_out(r.str8())))
        r.end()

    def _take(self):
        x = self._queue.popleft()
        if isinstance(x, CohortError):
            raise x
        return x

    def poll(self, timeout=0.0):
        """The changes queued now, waiting up to timeout seconds (None: for
        ever) for the first when there is none."""
        if not self._queue and self.active:
            self._client._pump(self, timeout)
        out = []
        while self._queue:
            out.append(self._take())
        return out

    def changes(self, timeout=None):
        """A generator of changes that ends when none comes for timeout
        seconds (None: never ends)."""
        while True:
            got = self.poll(timeout)
            if not got:
                return
            yield from got

    def __iter__(self):
        return self.changes(None)

    def close(self):
        """UNSUBSCRIBE; pushes still in flight are dropped."""
        if self.active:
            self._client.unsubscribe(self.table, self.model)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._client._sock is not None:
            self.close()
        return False


# ---- the client -----------------------------------------------------------

def _read_token_file(path):
    """The token in path: its first line that is not blank or a comment;
    a "<role> <token>" line (the server's token file format) gives its
    token. Like the C client, it refuses a file that others than its
    owner may read or write (the token is a secret: chmod 600 it)."""
    with open(path, "r", encoding="utf-8") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _err("EINVAL", "token file %s is not a regular file" % path)
        if st.st_mode & 0o077:
            raise _err("EINVAL", "token file %s is readable by others "
                       "(mode %03o): chmod 600 it"
                       % (path, st.st_mode & 0o777))
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) == 2 and parts[0] in ROLES[1:]:
                return parts[1]
            return line
    raise _err("EAUTH", "no token in %s" % path)


class Client:
    """A connection to cohortd.

    Client(host="127.0.0.1", port=7411, token=None, token_file=None,
    timeout=None, name="cohort.py"): connects, says HELLO (self.server
    gets the server's limits and name), then AUTH when a token is given
    (self.role gets the connection's role). timeout (seconds) bounds each
    wait for the server; None waits for ever. token_file: a file whose
    first line that is not blank or a comment is the token, or a
    "<role> <token>" line as in cohortd's token file. sock: an already
    connected socket to use instead (tests); hello=False skips HELLO.
    """

    def __init__(self, host="127.0.0.1", port=7411, token=None,
                 token_file=None, timeout=None, name="cohort.py",
                 sock=None, hello=True):
        if token is not None and token_file is not None:
            raise _err("EINVAL", "give token or token_file, not both")
        if token_file is not None:
            token = _read_token_file(token_file)
        self.timeout = timeout
        self._next_id = 1
        self._rbuf = bytearray()
        self._roff = 0
        self._pipe = None
        self._subs = {}           # request id -> Subscription
        self._schemas = {}        # table -> TableInfo
        self._error = None        # why the connection was dropped
        self.server = None
        self.role = None
        if sock is None:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self._sock = sock
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        try:
            if hello:
                self.hello(name)
            if token is not None:
                self.auth(token)
        except BaseException:
            self.close()
            raise

    # -- lifetime

    def close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                for s in self._subs.values():
                    s.active = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def pipeline(self, raise_errors=True):
        """A Pipeline: `with client.pipeline() as p:` queues calls. When the
        block ends, the first failed call's error is raised once every
        response is read, unless raise_errors is false (p.results then
        holds each call's result or CohortError, in order)."""
        return Pipeline(self, raise_errors)

    # -- I/O

    def _drop(self, why):
        self._error = why
        self.close()

    def _check_open(self):
        if self._sock is None:
            raise ConnectionClosed("connection closed" + (
                ": %s" % self._error if self._error else ""))

    def _frame(self, opcode, body):
        rid = self._next_id
        self._next_id = rid % 0xFFFFFFFF + 1
        if self.server is not None and len(body) > self.server.max_frame:
            raise _err("ELIMIT", "request of %d bytes, the server takes "
                       "at most %d" % (len(body), self.server.max_frame))
        return rid, encode_frame(opcode, rid, body)

    def _deadline(self, timeout):
        return None if timeout is None else _time.monotonic() + timeout

    def _wait(self, events, deadline):
        if deadline is None:
            ms = -1
        else:
            ms = max(0, int((deadline - _time.monotonic()) * 1000) + 1)
        self._poll.modify(self._sock, events)
        return self._poll.poll(ms)

    def _recv(self):
        """Read what the socket has; False when it would block."""
        try:
            data = self._sock.recv(1 << 18)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self._drop(str(e))
            raise ConnectionClosed("connection lost: %s" % e) from None
        if not data:
            self._drop("closed by the server")
            raise ConnectionClosed("connection closed by the server")
        if self._roff and self._roff == len(self._rbuf):
            self._rbuf.clear()
            self._roff = 0
        self._rbuf += data
        return True

    def _parse(self):
        """The next whole frame in the read buffer, or None."""
        buf, off = self._rbuf, self._roff
        if len(buf) - off < HEADER_LEN:
            return None
        try:
            opcode, flags, rid, body_len = decode_header(buf, off)
        except CohortError as e:
            self._drop(e.message)
            raise
        end = off + HEADER_LEN + body_len
        if len(buf) < end:
            return None
        body = buf[off + HEADER_LEN:end]
        self._roff = end
        if end > (1 << 20) and end * 2 > len(buf):
            del buf[:end]
            self._roff = 0
        if not flags & FLAG_RESPONSE:
            self._drop("a frame from the server without the RESPONSE flag")
            raise _err("EPROTO", "a frame from the server without the "
                       "RESPONSE flag")
        return opcode, flags, rid, body

    def _route_push(self, opcode, rid, body):
        sub = self._subs.get(rid)
        if sub is not None and opcode == OP["CHANGES"]:
            sub._push(body)

    def _exchange(self, queue):
        """Send queue's frames and read their responses in order, sending
        and reading at once. queue: (frame, decode, Pending) with frame
        (request id, bytes). Errors go into the Pendings; a lost
        connection fails the ones left."""
        self._check_open()
        out = memoryview(b"".join(f[1] for f, _, _ in queue))
        sent = 0
        i = 0
        deadline = self._deadline(self.timeout)
        try:
            while i < len(queue):
                if self._sock is None:
                    raise ConnectionClosed("connection closed: %s"
                                           % self._error)
                fr = self._parse()
                if fr is not None:
                    opcode, flags, rid, body = fr
                    if flags & FLAG_PUSH:
                        self._route_push(opcode, rid, body)
                        continue
                    (want, _), decode, pend = queue[i]
                    i += 1
                    self._answer(want, rid, body, decode, pend)
                    deadline = self._deadline(self.timeout)
                    continue
                if sent < len(out):
                    try:
                        n = self._sock.send(out[sent:sent + (1 << 20)])
                        sent += n
                        continue
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        # the server may have closed after an error
                        # response that is still to be read
                        out = out[:sent]
                if self._recv():
                    continue
                ev = select.POLLIN | (select.POLLOUT if sent < len(out) else 0)
                if not self._wait(ev, deadline):
                    self._drop("timed out")
                    raise ConnectionClosed(
                        "timed out after %ss waiting for the server"
                        % self.timeout)
        except (ConnectionError, CohortError) as e:
            err = e if isinstance(e, ConnectionError) else \
                ConnectionClosed(str(e))
            for _, _, pend in queue[i:]:
                pend._set(None, err)
            if self._sock is not None and isinstance(e, CohortError):
                self._drop(str(e))
        for _, _, pend in queue:
            if isinstance(pend._value, _Post):
                try:
                    pend._set(pend._value.fn(), None)
                except (CohortError, ConnectionError) as e:
                    pend._set(None, e)

    def _answer(self, want, rid, body, decode, pend):
        r = _R(body)
        try:
            status = r.i32()
            if status < 0:
                msg = r.text16()
                r.end()
                if rid != want or status == _CODE["EPROTO"]:
                    # the server closes the connection after these
                    self._drop("%s: %s" % (STATUS.get(status), msg))
                pend._set(None, CohortError(status, msg))
                return
            if rid != want:
                self._drop("response to request %d, expected %d"
                           % (rid, want))
                raise _err("EPROTO", "response to request %d, expected %d"
                           % (rid, want))
            value = decode(r) if decode is not None else None
            r.end()
        except CohortError as e:
            if e.code == _CODE["EPROTO"] and self._sock is not None:
                self._drop(e.message)
            pend._set(None, e)
            return
        pend._set(value, None)

    def _pump(self, sub, timeout):
        """Read frames until sub has a change or timeout passes."""
        self._check_open()
        deadline = self._deadline(timeout)
        while not sub._queue and sub.active:
            fr = self._parse()
            if fr is not None:
                opcode, flags, rid, body = fr
                if not flags & FLAG_PUSH:
                    self._drop("a response to no request")
                    raise _err("EPROTO", "a response to no request")
                self._route_push(opcode, rid, body)
                continue
            if self._recv():
                continue
            if not self._wait(select.POLLIN, deadline):
                return

    def _call(self, opcode, body, decode=None):
        """One request now (not queued), its decoded response."""
        frame = self._frame(opcode, body)
        pend = Pending()
        self._exchange([(frame, decode, pend)])
        return pend.result()

    def _submit(self, reqs, combine=None):
        """reqs: (opcode, body, decode). Queued in a pipeline, else sent
        now (several at once, pipelined) and combined."""
        frames = [(self._frame(op, body), dec) for op, body, dec in reqs]
        if self._pipe is not None:
            return self._pipe._add(frames, combine)
        queue = [(f, d, Pending()) for f, d in frames]
        self._exchange(queue)
        values = [p.result() for _, _, p in queue]
        return combine(values) if combine else values[0]

    # -- schema cache

    def _schema(self, table, refresh=False):
        info = self._schemas.get(table)
        if info is None or refresh:
            info = self._call(OP["DESCRIBE"], self._describe_body(table),
                              lambda r: self._dec_describe(table, r))
        return info

    def _column(self, table, ref):
        """Column of table by name or id (refreshing the cache once)."""
        info = self._schema(table)
        c = info.column(ref)
        if c is None:
            info = self._schema(table, refresh=True)
            c = info.column(ref)
            if c is None:
                raise _err("ENOCOLUMN", "table %s has no column %r"
                           % (table, ref))
        return c

    def _column_ids(self, table, cols):
        if cols is None:
            return []
        if isinstance(cols, (str, int)):
            cols = [cols]
        return [self._column(table, c).id for c in cols]

    def _filter(self, w, table, where):
        if where is None:
            w.u16(0)
            return
        if isinstance(where, Expr):
            nodes = where.nodes(lambda c: self._column(table, c).id)
        else:
            nodes = [(n[0], self._column(table, n[1]).id) + tuple(n[2:])
                     if n[0] in ("cmp", "in", "is_null", "not_null") else
                     tuple(n) for n in where]
        _enc_nodes(w, nodes)

    # -- session

    def hello(self, name="cohort.py"):
        """HELLO: a ServerInfo (also kept in self.server)."""
        w = _W()
        w.u16(PROTOCOL_VERSION)
        w.str8(name, "client name")

        def dec(r):
            info = ServerInfo(r.u16(), r.u32(), r.u32(), r.u32(),
                              bool(r.u8()), _role(r.u8()), r.text8())
            self.server = info
            self.role = info.role
            return info
        return self._call(OP["HELLO"], w.b, dec)

    def auth(self, token):
        """AUTH: the connection's role ("read", "write" or "admin")."""
        w = _W()
        w.str8(token, "token")

        def dec(r):
            self.role = _role(r.u8())
            return self.role
        return self._call(OP["AUTH"], w.b, dec)

    def ping(self):
        return self._submit([(OP["PING"], b"", None)])

    # -- schema

    def tables(self):
        """The names of the tables."""
        w = _W()
        w.u8(0)

        def dec(r):
            return [r.text8() for _ in range(r.u16())]
        return self._submit([(OP["DESCRIBE"], w.b, dec)])

    @staticmethod
    def _describe_body(table):
        w = _W()
        w.name(table, "table")
        return w.b

    def describe(self, table=None):
        """DESCRIBE table: a TableInfo (and the cached schema is
        refreshed); without a table, the list of tables."""
        if table is None:
            return self.tables()
        return self._submit([(OP["DESCRIBE"], self._describe_body(table),
                              lambda r: self._dec_describe(table, r))])

    def _dec_describe(self, table, r):
        ttl, nrows, mem = r.i64(), r.u64(), r.u64()
        cols = []
        for i in range(r.u16()):
            name = r.text8()
            t = r.u8()
            cols.append(Column(i, name, TYPES[t] if t < len(TYPES) else t,
                               r.u32(), r.i64(), r.u32()))

        def cname(i):
            return cols[i].name if i < len(cols) else i
        models = []
        for _ in range(r.u8()):
            name, version, k, dim = r.text8(), r.u64(), r.u32(), r.u32()
            mcols = [cname(r.u16()) for _ in range(r.u8())]
            mode = r.u8()
            models.append(Model(name, version, k, dim, mcols,
                                MODES[mode] if mode < 2 else mode,
                                bool(r.u8()), r.u64(), r.u64()))
        indexes = []
        for _ in range(r.u8()):
            name, col, metric = r.text8(), cname(r.u16()), r.u8()
            indexes.append(Index(name, col,
                                 METRICS[metric] if metric < 3 else metric,
                                 r.u32(), r.u32(), r.u32(), r.u64(), r.u64(),
                                 r.u64()))
        info = TableInfo(table, ttl, nrows, mem, cols, models, indexes)
        self._schemas[table] = info
        return info

    @staticmethod
    def _enc_column(w, col):
        if isinstance(col, Column):
            col = (col.name, col.type, col.dim, col.half_life_ms)
        if isinstance(col, str) or not 2 <= len(col) <= 4:
            raise _err("EINVAL", "a column is (name, type[, dim[, "
                       "half_life_ms]]), not %r" % (col,))
        name, ctype = col[0], col[1]
        dim = col[2] if len(col) > 2 else 0
        half_life = col[3] if len(col) > 3 else 0
        if isinstance(ctype, str):
            if ctype not in _TYPE:
                raise _err("EINVAL", "column %s: unknown type %r (one of %s)"
                           % (name, ctype, ", ".join(TYPES[1:])))
            ctype = _TYPE[ctype]
        w.name(name, "column")
        w.u8(ctype)
        w.u32(dim or 0)
        w.i64(half_life or 0)

    def table_create(self, table, columns, ttl_ms=0):
        """Create a table; columns: (name, type[, dim[, half_life_ms]])
        with type a name ("f32", "cat", "vec", "decay", ...) or a code."""
        w = _W()
        w.name(table, "table")
        w.i64(ttl_ms)
        columns = list(columns)
        w.u16(len(columns))
        for c in columns:
            self._enc_column(w, c)
        self._schemas.pop(table, None)
        return self._submit([(OP["TABLE_CREATE"], w.b, None)])

    def column_add(self, table, column):
        """Add a column (name, type[, dim[, half_life_ms]]); its id."""
        w = _W()
        w.name(table, "table")
        self._enc_column(w, column)
        self._schemas.pop(table, None)
        return self._submit([(OP["COLUMN_ADD"], w.b, lambda r: r.u16())])

    def index_create(self, table, index, column, metric="l2", M=0,
                     ef_construction=0, ef_search=0, lo=0.0, hi=0.0):
        """Create a similarity index on a vec column (metric "l2", "ip" or
        "cosine"; 0 for the defaults; lo == hi: the code range from the
        data)."""
        w = _W()
        w.name(table, "table")
        w.name(index, "index")
        w.u16(self._column(table, column).id)
        w.u8(METRICS.index(metric) if isinstance(metric, str) else metric)
        w.u32(M)
        w.u32(ef_construction)
        w.u32(ef_search)
        w.f32(lo)
        w.f32(hi)
        return self._submit([(OP["INDEX_CREATE"], w.b, None)])

    def index_drop(self, table, index):
        w = _W()
        w.name(table, "table")
        w.name(index, "index")
        return self._submit([(OP["INDEX_DROP"], w.b, None)])

    # -- writes

    def _chunks(self, head, items, encode_one):
        """Group encoded rows into requests of at most max_batch rows and
        max_frame bytes (head: the bytes before the rows): a list of
        (nrows, bytes of the rows)."""
        max_batch = self.server.max_batch if self.server else 10000
        max_frame = self.server.max_frame if self.server else 16 << 20
        chunks, cur, n = [], bytearray(), 0
        for item in items:
            w = _W()
            encode_one(w, item)
            full = head + len(cur) + len(w.b) > max_frame
            if n and (n == max_batch or full):
                chunks.append((n, cur))
                cur, n = bytearray(), 0
            cur += w.b
            n += 1
        if n or not chunks:
            chunks.append((n, cur))
        return chunks

    def _batch_write(self, opcode, table, items, encode_one):
        reqs = []
        t = _W()
        t.name(table, "table")
        for n, rows in self._chunks(len(t.b) + 4, items, encode_one):
            w = _W()
            w.b += t.b
            w.u32(n)
            w.b += rows
            reqs.append((opcode, w.b, _dec_batch))
        return self._submit(reqs, BatchResult.concat)

    def _enc_fields(self, table):
        def enc(w, row):
            if len(row) == 2:
                key, fields = row
                t = None
            else:
                key, fields, t = row
            w.key(key)
            w.time(t)
            items = fields.items() if hasattr(fields, "items") else fields
            items = list(items)
            w.u16(len(items))
            for col, v in items:
                c = self._column(table, col)
                w.u16(c.id)
                _enc_value(w, _TYPE.get(c.type, c.type), v,
                           "column %s" % c.name)
        return enc

    def put_many(self, table, rows):
        """PUT rows: (key, {column: value}[, time]); a BatchResult."""
        return self._batch_write(OP["PUT"], table, rows,
                                 self._enc_fields(table))

    def put(self, table, key, fields, time=None):
        """Upsert some columns of one row (None stores null)."""
        return self._single(self.put_many(table, [(key, fields, time)]))

    def _enc_updates(self, table):
        def enc(w, ev):
            if len(ev) == 2:
                key, updates = ev
                t = None
            else:
                key, updates, t = ev
            w.key(key)
            w.time(t)
            updates = list(updates)
            w.u16(len(updates))
            for u in updates:
                col, op, v = u
                c = self._column(table, col)
                w.u16(c.id)
                if isinstance(op, str):
                    if op not in EVENT_OPS:
                        raise _err("EINVAL", "event op %r: one of set, add, "
                                   "observe" % op)
                    op = EVENT_OPS[op]
                w.u8(op)
                _enc_value(w, _TYPE.get(c.type, c.type), v,
                           "column %s" % c.name)
        return enc

    def event_many(self, table, events):
        """EVENT: (key, [(column, op, value)][, time]) with op "set",
        "add" or "observe"; a BatchResult."""
        return self._batch_write(OP["EVENT"], table, events,
                                 self._enc_updates(table))

    def event(self, table, key, updates, time=None):
        """Apply one event: updates (column, op, value), all or nothing."""
        return self._single(self.event_many(table, [(key, updates, time)]))

    def delete_many(self, table, keys):
        """DELETE keys; a BatchResult (ENOTFOUND for an absent key)."""
        return self._batch_write(OP["DELETE"], table, keys,
                                 lambda w, k: w.key(k))

    def delete(self, table, key):
        """Delete one row; CohortError(ENOTFOUND) when it is absent."""
        return self._single(self.delete_many(table, [key]))

    def _single(self, res):
        if isinstance(res, Pending):
            comb = _Combined([res], lambda vs: _raise_row(vs[0]))
            self._pipe._combined.append(comb)
            self._pipe._tops[-1] = comb
            return comb
        return _raise_row(res)

    # -- reads

    def get(self, table, key, cols=None, at=None):
        """One row: a Row (dict column -> value, .status, .time)."""
        ids = self._column_ids(table, cols)
        w = _W()
        w.name(table, "table")
        w.time(at)
        w.u16(len(ids))
        for i in ids:
            w.u16(i)
        w.key(key)

        def dec(r):
            status, t, n = r.u8(), r.i64(), r.u16()
            values = [r.value() for _ in range(n)]
            names = ids or range(n)
            return _Post(lambda: Row({self._column(table, c).name: v
                                      for c, v in zip(names, values)},
                                     status, t))
        return self._submit([(OP["GET"], w.b, dec)])

    def get_many(self, table, keys, cols=None, at=None):
        """Many rows as a Batch of numpy arrays (see Batch)."""
        ids = self._column_ids(table, cols)
        keys = list(keys)
        max_batch = self.server.max_batch if self.server else 10000
        reqs = []
        for s in range(0, max(len(keys), 1), max_batch):
            part = keys[s:s + max_batch]
            w = _W()
            w.name(table, "table")
            w.time(at)
            w.u16(len(ids))
            for i in ids:
                w.u16(i)
            w.u32(len(part))
            for k in part:
                w.key(k)
            reqs.append((OP["GET_MANY"], w.b,
                         lambda r, part=part: self._dec_block(table, part, r)))
        return self._submit(reqs, Batch.concat)

    def _dec_block(self, table, keys, r):
        n, ncols = r.u32(), r.u16()
        if n != len(keys):
            raise _err("EPROTO", "GET_MANY answered %d keys for %d"
                       % (n, len(keys)))
        status = r.array("u1", n)
        times = r.array("<i8", n)
        raw = []
        for _ in range(ncols):
            cid, t, dim, width = r.u16(), r.u8(), r.u32(), r.u32()
            if t == 7:
                want = 4 * dim
            elif t in _BLOCK_DTYPE:
                want = np.dtype(_BLOCK_DTYPE[t]).itemsize
            else:
                raise _err("EPROTO", "GET_MANY: value type %d" % t)
            if width != want or (t != 7 and dim != 1):
                raise _err("EPROTO", "GET_MANY: column %d of type %s has "
                           "width %d, dim %d" % (cid, TYPES[t], width, dim))
            valid = r.array("u1", n).view(np.bool_)
            if t == 7:
                values = r.array("<f4", n * dim).reshape(n, dim)
            else:
                values = r.array(_BLOCK_DTYPE[t], n)
                if t == 5:
                    values = values.view(np.bool_)
            raw.append((cid, t, valid, values))
        strings = [r.text16() for _ in range(r.u32())]
        columns, valid_of, types = [], [], []
        for cid, t, valid, values in raw:
            if t == 6:
                if n and np.any(values[valid] >= len(strings)):
                    raise _err("EPROTO", "GET_MANY: cat code past the "
                               "string table")
                values = [strings[c] if ok else None
                          for c, ok in zip(values.tolist(), valid.tolist())]
            columns.append(values)
            valid_of.append(valid)
            types.append(TYPES[t])

        def name(j):
            return self._column(table, raw[j][0]).name
        return _Post(lambda: Batch(
            keys, status, times,
            {name(j): v for j, v in enumerate(columns)},
            {name(j): v for j, v in enumerate(valid_of)},
            {name(j): v for j, v in enumerate(types)}))

    def filter_count(self, table, where=None, at=None):
        """How many rows match where (None: every row)."""
        w = _W()
        w.name(table, "table")
        w.time(at)
        self._filter(w, table, where)
        return self._submit([(OP["FILTER_COUNT"], w.b, lambda r: r.u64())])

    def filter_list(self, table, where=None, limit=1000, at=None):
        """(count, keys): every match counted, up to limit keys listed."""
        w = _W()
        w.name(table, "table")
        w.time(at)
        w.u32(limit)
        self._filter(w, table, where)

        def dec(r):
            count = r.u64()
            return count, [_key_out(r.str8()) for _ in range(r.u32())]
        return self._submit([(OP["FILTER_LIST"], w.b, dec)])

    def knn(self, table, index, key=None, vector=None, k=10, ef=0,
            where=None, at=None, as_numpy=False):
        """The k nearest rows to a key's vector (the key excluded) or to a
        vector, nearest first: a list of Neighbor(key, distance), or with
        as_numpy (keys list, float32 distances array)."""
        if (key is None) == (vector is None):
            raise _err("EINVAL", "knn takes a key or a vector")
        w = _W()
        w.name(table, "table")
        w.name(index, "index")
        w.u32(k)
        w.u32(ef)
        w.time(at)
        if key is not None:
            w.u8(0)
            w.key(key)
        else:
            w.u8(1)
            w.floats(vector)
        self._filter(w, table, where)

        def dec(r):
            n = r.u32()
            keys, dist = [], np.empty(n, dtype=np.float32)
            for i in range(n):
                dist[i] = r.f32()
                keys.append(_key_out(r.str8()))
            if as_numpy:
                return keys, dist
            return [Neighbor(kk, float(d)) for kk, d in zip(keys, dist)]
        return self._submit([(OP["KNN"], w.b, dec)])

    # -- personas

    def persona_assign(self, table, model, key=None, values=None, m=1):
        """The m nearest personas of a row (by key) or of ad-hoc values
        (one per input column; one vector for a vec model): an
        Assignment; its fields past status are None unless the row is
        present."""
        if (key is None) == (values is None):
            raise _err("EINVAL", "persona_assign takes a key or values")
        w = _W()
        w.name(table, "table")
        w.name(model, "model")
        w.u8(m)
        if key is not None:
            w.u8(0)
            w.key(key)
        else:
            if isinstance(values, np.ndarray) and values.ndim == 1 \
                    and values.dtype.kind == "f":
                values = [values]
            values = list(values)
            w.u8(1)
            w.u16(len(values))
            for v in values:
                _enc_auto(w, v, "persona input")

        def dec(r):
            status = r.u8()
            if status != ROW_PRESENT:
                return Assignment(status, None, None, None, None, [], [])
            version, persona = r.u64(), r.u32()
            dist, anomaly = r.f32(), r.f32()
            nearest = [(r.u32(), r.f32()) for _ in range(r.u8())]
            explain = []
            for _ in range(r.u8()):
                col, elem = r.u16(), r.u32()
                explain.append((col, elem, r.f64(), r.f64(), r.f64()))
            return _Post(lambda: Assignment(
                status, version, persona, dist, anomaly, nearest,
                [Feature(self._column(table, f[0]).name, *f[1:])
                 for f in explain]))
        return self._submit([(OP["PERSONA_ASSIGN"], w.b, dec)])

    def persona_members(self, table, model, persona, limit=1000,
                        where=None, at=None):
        """(count, keys) of persona's members matching where."""
        w = _W()
        w.name(table, "table")
        w.name(model, "model")
        w.u32(persona)
        w.time(at)
        w.u32(limit)
        self._filter(w, table, where)

        def dec(r):
            count = r.u64()
            return count, [_key_out(r.str8()) for _ in range(r.u32())]
        return self._submit([(OP["PERSONA_MEMBERS"], w.b, dec)])

    def persona_sizes(self, table, model):
        """Sizes(version, k, sizes uint64 array, names list)."""
        w = _W()
        w.name(table, "table")
        w.name(model, "model")

        def dec(r):
            version, k = r.u64(), r.u32()
            sizes = np.empty(k, dtype=np.uint64)
            names = []
            for i in range(k):
                sizes[i] = r.u64()
                names.append(r.text8())
            return Sizes(version, k, sizes, names)
        return self._submit([(OP["PERSONA_SIZES"], w.b, dec)])

    def persona_describe(self, table, model):
        """A model and its personas, all from one version: a dict with
        version, k, dim, mode ("at_once" or "background"), training
        (bool), pending, assigned, columns (the input column ids), and per
        persona sizes (uint64, k), typical (float64, k: the members' mean
        distance), names (k strings, "" when unnamed) and centroids
        (float64, k x dim, in input units: a numeric model's columns'
        own units, a vec model's vector)."""
        w = _W()
        w.name(table, "table")
        w.name(model, "model")

        def dec(r):
            version, k, dim = r.u64(), r.u32(), r.u32()
            mode, training = r.u8(), r.u8()
            pending, assigned = r.u64(), r.u64()
            columns = [r.u16() for _ in range(r.u8())]
            if mode >= len(MODES) or training > 1:
                raise _err("EPROTO", "persona_describe: mode %d, training "
                           "%d" % (mode, training))
            sizes = np.empty(k, dtype=np.uint64)
            typical = np.empty(k, dtype=np.float64)
            centroids = np.empty((k, dim), dtype=np.float64)
            names = []
            for p in range(k):
                sizes[p] = r.u64()
                typical[p] = r.f64()
                names.append(r.text8())
                centroids[p] = r.array("<f8", dim)
            return {"version": version, "k": k, "dim": dim,
                    "mode": MODES[mode], "training": bool(training),
                    "pending": pending, "assigned": assigned,
                    "columns": columns, "sizes": sizes, "typical": typical,
                    "names": names, "centroids": centroids}
        return self._submit([(OP["PERSONA_DESCRIBE"], w.b, dec)])

    def _enc_model_def(self, w, table, columns, mode, max_delay_ms):
        ids = self._column_ids(table, columns)
        if len(ids) > 255:
            raise _err("ELIMIT", "a model has at most 255 input columns")
        w.u8(len(ids))
        for i in ids:
            w.u16(i)
        w.u8(MODES.index(mode) if isinstance(mode, str) else mode)
        w.u32(max_delay_ms)

    def persona_train(self, table, model, columns=None, k=8, iters=0,
                      seed=0, sample=0, mode="at_once", max_delay_ms=0,
                      minibatch=False, background=False):
        """Train a model on the table's rows (columns None: retrain the
        existing model); the new version (0 when it trains in the
        background)."""
        w = _W()
        w.name(table, "table")
        w.name(model, "model")
        self._enc_model_def(w, table, columns, mode, max_delay_ms)
        w.u32(k)
        w.u32(iters)
        w.u64(seed)
        w.u64(sample)
        w.u8((1 if minibatch else 0) | (2 if background else 0))
        return self._submit([(OP["PERSONA_TRAIN"], w.b, lambda r: r.u64())])

    def persona_upload(self, table, model, columns, centroids, mean=None,
                       sd=None, mode="at_once", max_delay_ms=0):
        """Upload centroids (k x dim, standardised space) as a new
        version; mean and sd (dim each) or None for the table's own. The
        new version."""
        c = np.asarray(centroids, dtype="<f4")
        if c.ndim != 2:
            raise _err("EDIM", "centroids must be k x dim, got shape %s"
                       % (c.shape,))
        k, dim = c.shape
        w = _W()
        w.name(table, "table")
        w.name(model, "model")
        self._enc_model_def(w, table, columns, mode, max_delay_ms)
        w.u32(k)
        w.u32(dim)
        w.b += c.tobytes()
        if (mean is None) != (sd is None):
            raise _err("EINVAL", "give both mean and sd, or neither")
        if mean is None:
            w.u8(0)
        else:
            w.u8(1)
            for a in (mean, sd):
                a = np.asarray(a, dtype="<f8")
                if a.shape != (dim,):
                    raise _err("EDIM", "mean and sd take %d values, got "
                               "shape %s" % (dim, a.shape))
                w.b += a.tobytes()
        return self._submit([(OP["PERSONA_UPLOAD"], w.b, lambda r: r.u64())])

    def subscribe(self, table, model, cursor=FROM_NOW):
        """Subscribe to a model's persona changes from cursor (0: the
        oldest kept; FROM_NOW, the default: from now): a Subscription.
        Never pipelined."""
        if self._pipe is not None:
            raise _err("EINVAL", "subscribe cannot be pipelined")
        w = _W()
        w.name(table, "table")
        w.name(model, "model")
        w.u64(cursor)
        frame = self._frame(OP["SUBSCRIBE"], w.b)
        sub = Subscription(self, table, model, frame[0])
        # pushes may follow the response at once: route them from the start
        self._subs[frame[0]] = sub
        pend = Pending()
        self._exchange([(frame, lambda r: r.u64(), pend)])
        if pend.exception() is not None:
            del self._subs[frame[0]]
        sub.cursor = pend.result()
        return sub

    def unsubscribe(self, table, model):
        w = _W()
        w.name(table, "table")
        w.name(model, "model")
        for rid, s in list(self._subs.items()):
            if s.table == table and s.model == model:
                s.active = False
                del self._subs[rid]
        return self._submit([(OP["UNSUBSCRIBE"], w.b, None)])

    # -- operations

    def snapshot(self):
        """Write a snapshot; returns once it is durable."""
        return self._submit([(OP["SNAPSHOT"], b"", None)])

    def stats(self):
        """The server's counters: a dict name -> int; its "io_path" key
        holds the I/O path string."""
        def dec(r):
            out = {}
            for _ in range(r.u16()):
                name = r.text8()
                out[name] = r.u64()
            out["io_path"] = r.text16()
            return out
        return self._submit([(OP["STATS"], b"", dec)])


def _role(code):
    return ROLES[code] if code < len(ROLES) else code


def _dec_batch(r):
    n = r.u32()
    status = r.array("<i4", n).copy()
    errors = {}
    for _ in range(r.u32()):
        row = r.u32()
        errors[row] = r.text16()
    return BatchResult(status, errors)


def _raise_row(res):
    res.raise_for_status()
    return None
