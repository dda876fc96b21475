"""Generated hostile inputs of issue 25 (hardening II), classes 5, 7 and 8, for
``tests/test_hardening_inputs.py``.

* class 5, :func:`record_cases`: a valid bench directory's ``results.jsonl`` with one unit changed
  (every field of every kind of record set to each odd value or removed, the whole unit given
  another dataset or kind of user id, a context dropped or doubled) or the file itself changed
  (no final newline, another program's partial line, blank lines, CRLF, a BOM, huge numbers,
  deep nesting, bytes that are not UTF-8);
* class 7, :func:`oversized_cases`: ``.npz`` files whose arrays inflate beyond the limit, TOML
  configs too large, too long or too deep, export shapes too large, model files with huge values;
* class 8, :func:`address_cases`: ``--address`` values of a wrong form.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ---------------------------------------------------------------- class 5: a valid bench directory

USERS = (2, 8, 14, 20)  # fold 2: served by the shipped generic model (nothing is trained)
METHODS = ("generic", "finetune", "crop")
CONTEXTS = (("available", "session 1"), ("unseen", "session 2"))
PLAIN = ("balanced_accuracy", "accuracy", "f1")
ROBUST = ("verified_ibp", "verified", "pgd")
TARGET = (8, "finetune")  # the unit every unit mutation changes (one in the middle of the file)
SETTINGS = {
    "dataset": "hapt",
    "metric": "balanced_accuracy",
    "configs": {m: {} for m in METHODS},
    "fairness": True,
    "certify": {"eps": [0.01], "norm": "linf", "pgd_steps": 20, "sigma": None},
    "norm": "batch",
    "protocol": "test",
    "generic": None,
    "tune": False,
}


def unit_records(user: int, method: str) -> list[dict[str, Any]]:
    """The records ``crop bench --certify eps=0.01 --fairness`` writes for one unit (synthetic values)."""
    rng = np.random.default_rng(user * 10 + METHODS.index(method))
    base = {"dataset": "hapt", "scenario": "hapt-session:1", "user": user, "seed": 0, "method": method}
    if method == "crop":
        base["prune_amount"] = 0.3
    out = []
    for context, name in CONTEXTS:
        common = {**base, "status": "ok", "context": context, "context_name": name}
        for metric in PLAIN:
            out.append({**common, "metric": metric, "value": round(float(rng.uniform(0.5, 1)), 10)})
        for kind in ROBUST:
            value = round(float(rng.uniform(0, 0.5)), 10)
            out.append({**common, "metric": f"{kind}@linf:0.01", "norm": "linf", "radius": 0.01, "value": value})
        matrix = (np.eye(6, dtype=int) * rng.integers(3, 9, 6) + (rng.random((6, 6)) < 0.1)).tolist()
        out.append({**common, "metric": "confusion", "value": int(np.sum(matrix)), "confusion": matrix})
    out[-1]["unit_complete"] = True
    return out


def bench_blocks() -> list[list[dict[str, Any]]]:
    return [unit_records(u, m) for u in USERS for m in METHODS]


def lines_of(blocks: list[list[dict[str, Any]]]) -> list[str]:
    return [json.dumps(r, sort_keys=True) + "\n" for b in blocks for r in b]


def target_index() -> int:
    return [(u, m) for u in USERS for m in METHODS].index(TARGET)


def write_bench_dir(out: Path, text: bytes | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(SETTINGS, indent=2))
    (out / "results.jsonl").write_bytes(text if text is not None else "".join(lines_of(bench_blocks())).encode())


# ---------------------------------------------------------------- class 5: the cases

DELETE = object()
ODD: list[Any] = [
    None,
    "",
    "x",
    "8",
    " ",
    -1,
    0,
    1,
    2.5,
    1e308,
    10**30,
    True,
    [],
    {},
    [1, 2],
    {"a": 1},
    "NaN",
    "a" * 2000,
]
EXTRA_FIELDS = ("status", "error", "prune_amount", "tuned", "sigma", "norm", "radius", "confusion", "unit_complete")
SELECTORS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "plain": lambda r: r["context"] == "unseen" and r["metric"] == "balanced_accuracy",
    "robust": lambda r: r["context"] == "available" and r["metric"] == "verified@linf:0.01",
    "confusion": lambda r: r["context"] == "available" and r["metric"] == "confusion",
    "last": lambda r: bool(r.get("unit_complete")),
}


@dataclass(frozen=True)
class RecordCase:
    """One changed ``results.jsonl``: ``make()`` gives its bytes; ``target``: whether the changed
    unit must be kept whole (True), skipped (False) or either (None: the change may be valid);
    ``all_kept``: every record of the file must be kept (a change that damages nothing)."""

    id: str
    make: Callable[[], bytes] = field(compare=False)
    target: bool | None = None
    all_kept: bool = False


def _with_unit(change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Callable[[], bytes]:
    def make() -> bytes:
        blocks = bench_blocks()
        i = target_index()
        blocks[i] = change([dict(r) for r in blocks[i]])
        return "".join(lines_of(blocks)).encode()

    return make


def _set_field(selector: str, name: str, value: Any) -> Callable[[], bytes]:
    def change(block: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = next(r for r in block if SELECTORS[selector](r))
        if value is DELETE:
            r.pop(name, None)
        else:
            r[name] = value
        return block

    return _with_unit(change)


def _set_all(name: str, value: Any) -> Callable[[], bytes]:
    return _with_unit(lambda block: [{**r, name: value} for r in block])


def _file(change: Callable[[bytes], bytes]) -> Callable[[], bytes]:
    return lambda: change("".join(lines_of(bench_blocks())).encode())


def _lines(change: Callable[[list[str]], list[str]]) -> Callable[[], bytes]:
    return lambda: "".join(change(lines_of(bench_blocks()))).encode()


def _target_lines() -> tuple[int, int]:
    """First and one-past-last line index of the target unit."""
    first = sum(len(b) for b in bench_blocks()[: target_index()])
    return first, first + len(unit_records(*TARGET))


def _insert_after_target(text: str) -> Callable[[], bytes]:
    def change(lines: list[str]) -> list[str]:
        _, end = _target_lines()
        return lines[:end] + [text] + lines[end:]

    return _lines(change)


def _complete(block: list[dict[str, Any]]) -> list[dict[str, Any]]:
    block = [{k: v for k, v in r.items() if k != "unit_complete"} for r in block]
    block[-1]["unit_complete"] = True
    return block


def _drop_unseen_confusion(block: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _complete([r for r in block if not (r["context"] == "unseen" and r["metric"] == "confusion")])


def _second_unseen(block: list[dict[str, Any]]) -> list[dict[str, Any]]:
    extra = [{**r, "context_name": "session 2 rotated"} for r in block if r["context"] == "unseen"]
    return _complete(block + extra)


def _target_line_bytes(old: bytes, new: bytes) -> Callable[[], bytes]:
    def make() -> bytes:
        first, _ = _target_lines()
        lines = [x.encode() for x in lines_of(bench_blocks())]
        lines[first] = lines[first].replace(old, new)
        return b"".join(lines)

    return make


def field_cases() -> list[RecordCase]:
    out = []
    for selector in SELECTORS:
        example = next(r for r in unit_records(*TARGET) if SELECTORS[selector](r))
        for name in sorted(set(example) | set(EXTRA_FIELDS)):
            for value in [DELETE, *ODD]:
                shown = "del" if value is DELETE else json.dumps(value)[:24]
                out.append(RecordCase(f"record:{selector}.{name}={shown}", _set_field(selector, name, value)))
    return out


def unit_cases() -> list[RecordCase]:
    """Whole-unit changes: another dataset or kind of user id (a string user among integer users),
    odd unit keys, a unit with one context, two available contexts, a record twice, mixed status."""
    out = [
        RecordCase("unit:user='8' (a name among integer users)", _set_all("user", "8"), target=False),
        RecordCase("unit:user=8.0", _set_all("user", 8.0), target=False),
        RecordCase("unit:user=31 (no HAPT user: data as data)", _set_all("user", 31), target=True),
        RecordCase("unit:user=0", _set_all("user", 0), target=True),
        RecordCase("unit:user=-8", _set_all("user", -8), target=False),
        RecordCase("unit:user=10**30", _set_all("user", 10**30), target=False),
        RecordCase("unit:dataset=stress", _set_all("dataset", "stress"), target=False),
        RecordCase("unit:dataset=''", _set_all("dataset", ""), target=False),
        RecordCase("unit:scenario=hapt-session:3", _set_all("scenario", "hapt-session:3"), target=True),
        RecordCase("unit:scenario=/../../x", _set_all("scenario", "/../../x"), target=True),
        RecordCase("unit:seed=-1", _set_all("seed", -1), target=False),
        RecordCase("unit:seed=2**32", _set_all("seed", 2**32), target=False),
        RecordCase("unit:seed='0'", _set_all("seed", "0"), target=False),
        RecordCase("unit:method=''", _set_all("method", ""), target=False),
        RecordCase("unit:method=7", _set_all("method", 7), target=False),
        RecordCase("unit:status=maybe", _set_all("status", "maybe"), target=False),
        RecordCase("unit:context_name missing", _with_unit(lambda b: [{**r, "context_name": None} for r in b]), False),
        RecordCase(
            "unit:only the available context",
            _with_unit(
                lambda b: [r for r in b if r["context"] == "available"][:-1] + [{**b[6], "unit_complete": True}]
            ),
            target=False,
        ),
        RecordCase(
            "unit:only the unseen context", _with_unit(lambda b: [r for r in b if r["context"] == "unseen"]), False
        ),
        RecordCase(
            "unit:two available contexts",
            _with_unit(lambda b: [{**r, "context": "available"} for r in b]),
            target=False,
        ),
        RecordCase("unit:unseen context without its confusion record", _with_unit(_drop_unseen_confusion), False),
        RecordCase(
            "unit:a failed record among ok ones",
            _with_unit(
                lambda b: (
                    [b[0] | {"status": "failed", "error": "x", "context": None, "metric": None, "value": None}] + b[1:]
                )
            ),
            target=False,
        ),
        RecordCase(
            "unit:a failed unit (valid)",
            _with_unit(
                lambda b: [
                    {k: v for k, v in b[0].items() if k not in ("context_name", "prune_amount")}
                    | {
                        "status": "failed",
                        "error": "RuntimeError: x",
                        "context": None,
                        "metric": None,
                        "value": None,
                        "unit_complete": True,
                    }
                ]
            ),
            target=True,
        ),
        RecordCase(
            "unit:robustness name and radius disagree",
            _with_unit(lambda b: [{**r, "radius": 0.02} if "radius" in r else r for r in b]),
            target=False,
        ),
        RecordCase(
            "unit:confusion sums disagree",
            _with_unit(lambda b: [{**r, "value": r["value"] + 1} if r["metric"] == "confusion" else r for r in b]),
            target=False,
        ),
        RecordCase(
            "unit:fault severity inf",
            _with_unit(
                lambda b: [{**r, "context_name": "session 2 noise=inf"} if r["context"] == "unseen" else r for r in b]
            ),
            target=False,
        ),
        RecordCase(
            "unit:fault severity valid",
            _with_unit(
                lambda b: [{**r, "context_name": "session 2 noise=0.5"} if r["context"] == "unseen" else r for r in b]
            ),
            target=True,
        ),
        RecordCase("unit:a second unseen context (valid)", _with_unit(_second_unseen), target=True),
        RecordCase(
            "unit:without unit_complete",
            _with_unit(lambda b: b[:-1] + [{k: v for k, v in b[-1].items() if k != "unit_complete"}]),
            target=False,
        ),
    ]
    return out


def file_cases() -> list[RecordCase]:
    first, end = _target_lines()
    partial = '{"dataset": "hapt", "scenario": "hapt-ses'
    out = [
        RecordCase("file:no final newline (a complete last record)", _file(lambda t: t[:-1]), all_kept=True),
        RecordCase("file:CRLF line ends", _file(lambda t: t.replace(b"\n", b"\r\n")), all_kept=True),
        RecordCase("file:blank lines between units", _insert_after_target("\n"), target=True),
        RecordCase(
            "file:spaces before a record",
            _lines(lambda ls: [("   " + x if i == first else x) for i, x in enumerate(ls)]),
            all_kept=True,
        ),
        RecordCase(
            "file:another program's partial line, then a unit on the same line",
            _lines(lambda ls: ls[:first] + [partial + ls[first]] + ls[first + 1 :]),
            target=True,
            all_kept=True,
        ),
        RecordCase(
            "file:two records on one line (a newline left out)",
            _lines(lambda ls: ls[: first - 1] + [ls[first - 1].rstrip("\n") + ls[first]] + ls[first + 1 :]),
            target=True,
            all_kept=True,
        ),
        RecordCase(
            "file:a partial line inside the target unit, then its record",
            _lines(lambda ls: ls[: first + 4] + [partial + ls[first + 4]] + ls[first + 5 :]),
            target=True,
            all_kept=True,
        ),
        RecordCase("file:a partial line appended at the end", _file(lambda t: t + partial.encode()), all_kept=True),
        RecordCase(
            "file:a partial line and newline appended", _file(lambda t: t + partial.encode() + b"\n"), all_kept=True
        ),
        RecordCase("file:a garbage line after the target unit", _insert_after_target("garbage\n"), target=True),
        RecordCase("file:a BOM", _file(lambda t: b"\xef\xbb\xbf" + t), target=True),
        RecordCase(
            "file:bytes that are not UTF-8 in a record",
            _target_line_bytes(b'"session 1"', b'"session \xff"'),
            target=False,
        ),
        RecordCase("file:a 5000-digit value", _insert_after_target('{"value": ' + "9" * 5000 + "}\n"), target=True),
        RecordCase(
            "file:a record nested 100000 deep", _insert_after_target("[" * 100000 + "]" * 100000 + "\n"), target=True
        ),
        RecordCase(
            "file:NaN and Infinity tokens",
            _with_unit(lambda b: [{**r, "value": float("nan")} if r["metric"] == "accuracy" else r for r in b]),
            target=False,
        ),
        RecordCase("file:a 1 MB line", _insert_after_target("x" * 1_000_000 + "\n"), target=True),
        RecordCase("file:a line of NUL bytes", _insert_after_target("\0" * 100 + "\n"), target=True),
        RecordCase(
            "file:the target unit written twice",
            _lines(lambda ls: ls[:end] + ls[first:end] + ls[end:]),
            target=True,
            all_kept=True,
        ),
        RecordCase(
            "file:the target's records shuffled into another unit",
            _lines(lambda ls: ls[: first + 3] + ls[end : end + 2] + ls[first + 3 :]),
            target=None,
        ),
        RecordCase(
            "file:a record of the target torn in the middle of the file",
            _lines(lambda ls: ls[: first + 2] + [ls[first + 2][:30] + "\n"] + ls[first + 3 :]),
            target=False,
        ),
    ]
    return out


def record_cases() -> list[RecordCase]:
    cases = field_cases() + unit_cases() + file_cases()
    assert len({c.id for c in cases}) == len(cases), "case ids must be unique"
    return cases


# ---------------------------------------------------------------- class 7: oversized inputs


def npy_header(shape: tuple[int, ...], descr: str = "<f4", version: tuple[int, int] = (1, 0)) -> bytes:
    from numpy.lib import format as npy

    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
    if version == (1, 0):
        npy.write_array_header_1_0(buf, header)
    else:
        npy.write_array_header_2_0(buf, header)
    return buf.getvalue()


def deflated_zeros(header: bytes, zeros: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``header`` followed by ``zeros`` zero bytes, its CRC-32 and
    uncompressed size, built from one compressed block repeated (a second, not a minute)."""
    chunk = 1 << 22
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)]
    block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)
    n, rest = divmod(zeros, chunk)
    parts += [block] * max(0, n - 1)
    parts.append(c.compress(bytes(rest)) + c.flush(zlib.Z_FINISH))
    crc, z = zlib.crc32(header), bytes(chunk)
    for _ in range(n):
        crc = zlib.crc32(z, crc)
    crc = zlib.crc32(bytes(rest), crc)
    return b"".join(parts), crc, len(header) + zeros


def write_zip(path: Path, members: dict[str, tuple[bytes, int, int]]) -> None:
    """A zip of already deflated members (name -> (data, crc, size)); sizes below 4 GiB."""
    out, central = bytearray(), bytearray()
    for name, (data, crc, size) in members.items():
        encoded = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(encoded), 0)
        out += encoded + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(encoded),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += encoded
    start = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0)
    path.write_bytes(bytes(out))


def npz_bomb(path: Path, windows: int = 553_000, extra: dict[str, np.ndarray] | None = None) -> None:
    """``X`` (windows, 6, 128) float32 and ``y`` (windows,) int64 of zeros: 1.7 GB inflated from
    1.7 MB on disk (the issue's example), a real, valid file."""
    members = {
        "X.npy": deflated_zeros(npy_header((windows, 6, 128)), windows * 6 * 128 * 4),
        "y.npy": deflated_zeros(npy_header((windows,), "<i8"), windows * 8),
    }
    for name, array in (extra or {}).items():
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array)
        raw = buf.getvalue()
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        members[f"{name}.npy"] = (c.compress(raw) + c.flush(), zlib.crc32(raw), len(raw))
    write_zip(path, members)


def lying_npz(path: Path, arrays: dict[str, tuple[tuple[int, ...], str]], version: tuple[int, int] = (1, 0)) -> None:
    """A zip whose ``.npy`` headers claim ``arrays`` (name -> (shape, descr)) over 100 bytes of data."""
    members = {}
    for name, (shape, descr) in arrays.items():
        raw = npy_header(shape, descr, version) + bytes(100)
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        members[f"{name}.npy"] = (c.compress(raw) + c.flush(), zlib.crc32(raw), len(raw))
    write_zip(path, members)


HUGE = 2**30 // 4 + 1  # float32 values just above the 1 GiB limit
NPZ_FILES: dict[str, Callable[[Path], None]] = {
    "bomb": lambda p: npz_bomb(p),
    "lying_x": lambda p: lying_npz(p, {"X": ((HUGE // 768 + 1, 6, 128), "<f4"), "y": ((10,), "<i8")}),
    "lying_y": lambda p: lying_npz(p, {"X": ((10, 6, 128), "<f4"), "y": ((2**28,), "<i8")}),
    "lying_context": lambda p: lying_npz(
        p, {"X": ((10, 6, 128), "<f4"), "y": ((10,), "<i8"), "context": ((10,), "<U30000000")}
    ),
    "lying_split": lambda p: lying_npz(p, {"X": ((2**29 // 3072, 6, 128), "<f4"), "y": ((2**27,), "<i8")}),
    "lying_v2": lambda p: lying_npz(p, {"X": ((10**6, 6, 128), "<f4"), "y": ((10**6,), "<i8")}, (2, 0)),
    "lying_void": lambda p: lying_npz(p, {"X": ((10,), "|V200000000"), "y": ((10,), "<i8")}),
    "lying_dims": lambda p: lying_npz(p, {"X": ((2**20, 2**20, 2**20), "<f4"), "y": ((10,), "<i8")}),
    "object": lambda p: lying_npz(p, {"X": ((10, 6, 128), "|O"), "y": ((10,), "<i8")}),
}

TOML_FILES: dict[str, str] = {
    "deep_arrays": "[finetune]\nx = " + "[\n" * 1000 + "]\n" * 1000,
    "deep_inline": "[finetune]\nx = " + "{a = " * 40 + "1" + "}" * 40 + "\n",
    "deep_one_line": "x = " + "[" * 1000 + "]" * 1000 + "\n",
    "long_int": "[finetune.train]\nepochs = " + "9" * 4300 + "\n",
    "long_int_short_line": "[finetune.train]\nepochs = " + "9" * 990 + "\n",
    "dotted_key_100k": "a" + ".a" * 50_000 + " = 1\n",
    "dotted_key_40": "a" + ".a" * 40 + " = 1\n",
    "deep_header": "[" + "a." * 40 + "a]\nx = 1\n",
    "long_header": "[" + "a" * 5000 + "]\n",
    "long_string": 'x = "' + "a" * 5000 + '"\n',
    "big_file": "[finetune.train]\n" + "# padding\n" * 7000 + "epochs = 2\n",
    "many_tables": "".join(f"[t{i}]\nk = 1\n" for i in range(4400)),
    "many_tables_over": "".join(f"[t{i}]\nk = 1\n" for i in range(20000)),
    "nul_bytes": "[finetune]\n\0\0\0 = 1\n",
    "not_utf8": "[finetune]\nx = 'caf\udce9'\n",
    "deep_tables": "".join("[" + ".".join(["t"] * d) + "]\n" for d in range(1, 40)),
}

SHAPES = ["1000000,1000000", "65537", "256,257", "1,1,1,1,1,1,1,1,1", "6,60000", "1000000", "4096,4096,4096"]
WEIGHT_SCALES = {"1e13": 1e13, "1e30": 1e30, "-1e30": -1e30, "1e38": 1e38}
WEIGHT_TENSORS = ("1.weight", "1.bias", "0.mean", "0.std", "2.running_var", "15.weight")


@dataclass(frozen=True)
class Oversized:
    """A command line with an oversized input; ``@name`` is a fixture file, ``%name`` a path in the
    working directory. It must end with exit 2 and one ``crop: error:`` line containing ``expect``."""

    group: str
    argv: tuple[str, ...]
    expect: str

    @property
    def id(self) -> str:
        return f"{self.group}: {' '.join(self.argv)}"[:140]


def oversized_cases() -> list[Oversized]:
    out = []
    model = "@model.safetensors"
    for name in NPZ_FILES:
        expect = "Python objects" if name == "object" else "decompressed"
        npz = f"@{name}.npz"
        out.append(Oversized("npz", ("certify", "--model", model, "--data", npz), expect))
        out.append(
            Oversized(
                "npz", ("personalize", "--model", model, "--data", npz, "--available", "a", "--out", "%o"), expect
            )
        )
        out.append(
            Oversized(
                "npz",
                ("tune", "--model", model, "--data", npz, "--available", "a", "--method", "finetune", "--out", "%t"),
                expect,
            )
        )
        out.append(
            Oversized(
                "npz",
                (
                    "bench",
                    "--dataset",
                    "npz",
                    "--root",
                    f"@root_{name}",
                    "--scenario",
                    "a",
                    "--model",
                    model,
                    "--out",
                    "%b",
                ),
                expect,
            )
        )
        phase = "readable" if name == "lying_context" else expect  # a PERCEPT-R file has no context array
        out.append(
            Oversized("npz", ("bench", "--dataset", "perceptr", "--root", f"@perceptr_{name}", "--out", "%b"), phase)
        )
    for name, text in TOML_FILES.items():
        if name in ("long_int_short_line",):
            expect = "epochs"
        elif name == "many_tables":
            expect = "unknown method"
        elif name in ("not_utf8", "nul_bytes", "deep_tables"):
            expect = "TOML" if name != "deep_tables" else "deeper"
        elif len(max(text.split("\n"), key=len)) > 1000 and len(text.encode()) <= 65536:
            expect = "characters"
        elif len(text.encode()) > 65536:
            expect = "bytes"
        else:
            expect = "deeper"
        config = f"@{name}.toml"
        out.append(
            Oversized(
                "toml",
                (
                    "bench",
                    "--scenario",
                    "hapt-session:1",
                    "--users",
                    "2",
                    "--methods",
                    "finetune",
                    "--config",
                    config,
                    "--out",
                    "%b",
                ),
                expect,
            )
        )
        out.append(
            Oversized(
                "toml",
                ("personalize", "--user", "2", "--method", "finetune", "--config", config, "--out", "%o"),
                expect,
            )
        )
        out.append(
            Oversized(
                "toml", ("tune", "--user", "2", "--method", "finetune", "--config", config, "--out", "%t"), expect
            )
        )
    for shape in SHAPES:
        out.append(
            Oversized("export-shape", ("export", model, "--out", "%m.onnx", "--input-shape", shape), "input shape")
        )
    for scale in WEIGHT_SCALES:
        for tensor in WEIGHT_TENSORS:
            bad = f"@weights_{scale}_{tensor}.safetensors"
            expect = "magnitude"
            out.append(
                Oversized("weights", ("certify", "--model", bad, "--user", "2", "--certify", "eps=0.01"), expect)
            )
            out.append(Oversized("weights", ("export", bad, "--out", "%m.onnx"), expect))
            out.append(Oversized("weights", ("personalize", "--user", "2", "--model", bad, "--out", "%o"), expect))
    return out


# ---------------------------------------------------------------- class 8: --address of a wrong form


def address_cases() -> list[str]:
    """``--address`` values that are not ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``."""
    long_label = "a" * 64
    out = [
        "",
        " ",
        "1:1",
        "2:6379",
        "1.2.3:4",
        "1.2.3.4.5:6",
        "256.1.1.1:6379",
        "01234:1",
        "a" * 250 + ":6379",
        ".".join(["a" * 63] * 4) + "a:6379",
        f"{long_label}.example.org:6379",
        "head:0",
        "head:65536",
        "head:99999",
        "head:-1",
        "head:",
        "head",
        ":6379",
        "head:63 79",
        "head:6379 ",
        " head:6379",
        "head:+6379",
        "head:0x10",
        "head:６３７９",
        "héad:6379",
        "head_node:6379",
        "-head:6379",
        "head-:6379",
        "head..org:6379",
        ".head:6379",
        "head.:6379",
        "[::1]:6379",
        "::1:6379",
        "http://head:6379",
        "ray://",
        "ray://head",
        "ray://:10001",
        "ray://head:0",
        "ray:/head:1",
        "RAY://head:10001",
        "auto ",
        "AUTO",
        "head:6379\n",
        "head\x1b[31m:6379",
        "head:6379/path",
        "user@head:6379",
        "head:6379:1",
        "ray://ray://head:1",
        "localhost:100000",
    ]
    return out
