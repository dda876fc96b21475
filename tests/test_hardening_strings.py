"""Hostile strings (issue 25, classes 1, 6 and the first item of 10): every case ends with exit code
0 (the documented success) or 2 with one ``crop: error:`` line, and:

* no traceback, no internal error, and nothing on stdout or stderr that a terminal would act
  on (ESC, BEL, CR, C1 controls, bidi controls, lone surrogates);
* nothing is written outside the named output (a ``victim`` directory beside the working
  directory, where the traversal strings point, stays as it was), and no existing file changes;
  a refused case (exit 2) writes nothing at all;
* every file a successful case creates is named by :mod:`crop.safe_names` (lowercase ASCII,
  no separator, not hidden), and sets of names that differ only in case or punctuation get as
  many files as names;
* Markdown and HTML hold no raw HTML, link or control character from the data, CSV cells no
  formula, text files are valid UTF-8, figures are drawn.

The cases are listed in :mod:`tests.robustness_hostile`; a few dozen run with ``make test``,
all of them with ``make test-slow``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from crop.cli import run
from tests.robustness_hostile import HOSTILE, NON_UTF8, HostileCase, all_cases, fast_subset

FULL = all_cases()
FAST = fast_subset(FULL)
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "crop" / "models" / "weights" / "hapt-generic.safetensors"
UNSAFE_OUTPUT = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
SAFE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


# ------------------------------------------------------------------------------ shared assets


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile-assets")
    shutil.copyfile(SHIPPED, root / "model.safetensors")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 6, 128)).astype(np.float32)
    np.savez(root / "data.npz", X=X, y=np.arange(24) % 6)
    return root


# ------------------------------------------------------------------------------ inputs with one hostile string


def _value(case: HostileCase) -> str:
    assert isinstance(case.value, str)
    return case.value


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _unit(base: dict, contexts: list[tuple[str, str]], value: float = 0.5, robust: bool = True) -> list[dict]:
    block = []
    for context, name in contexts:
        for metric in ("balanced_accuracy", "accuracy"):
            block.append({**base, "status": "ok", "context": context, "context_name": name, "metric": metric})
            block[-1]["value"] = value
        if robust:
            for kind in ("verified", "pgd"):
                block.append({**base, "status": "ok", "context": context, "context_name": name})
                block[-1] |= {"metric": f"{kind}@linf:0.01", "value": 0.4, "norm": "linf", "radius": 0.01}
    block[-1]["unit_complete"] = True
    return block


def report_dir(root: Path, field: str, values: tuple[str, ...]) -> Path:
    """A bench directory whose records carry ``values`` in ``field`` (several: one scenario each)."""
    out = root / "bench"
    out.mkdir(parents=True)
    records: list[dict] = []
    dataset = values[0] if field == "dataset" else "hapt"
    for v in values:
        scenario = v if field == "scenario" else "hapt-session:1"
        method = v if field == "method" else "finetune"
        user = v if field == "user" else 2
        context = v if field == "context_name" else "session 2"
        for m, acc in (("generic", 0.5), (method, 0.7)):
            base = {"dataset": dataset, "scenario": scenario, "user": user, "seed": 0, "method": m}
            contexts = [("available", "session 1"), ("unseen", context), ("unseen", "dead-gyro=0.5")]
            records += _unit(base, contexts, acc)
        if field == "error":
            base = {"dataset": dataset, "scenario": scenario, "user": user, "seed": 0, "method": "crop"}
            records.append({**base, "status": "failed", "error": v, "unit_complete": True})
    (out / "results.jsonl").write_text(_jsonl(records), encoding="utf-8", errors="surrogatepass")
    (out / "bench.json").write_text(json.dumps({"dataset": dataset, "metric": "balanced_accuracy", "configs": {}}))
    return out


FAIR_USERS = (2, 8, 14, 20)


def fairness_dir(root: Path, field: str, values: tuple[str, ...]) -> Path:
    """A ``crop bench --fairness`` directory (four people, confusion records) with ``values`` in
    ``field`` (scenario, method or context name; several scenarios for a collision set)."""
    rng = np.random.default_rng(0)
    out = root / "bench"
    out.mkdir(parents=True)
    records = []
    scenarios = values if field == "scenario" else ("hapt-session:1",)
    method = values[0] if field == "method" else "finetune"
    context = values[0] if field == "context_name" else "session 2"
    for scenario in scenarios:
        for m, skill in (("generic", 0.6), (method, 0.8)):
            for user in FAIR_USERS:
                block = []
                for ctx, name in (("available", "session 1"), ("unseen", context)):
                    y = np.arange(24) % 3
                    pred = np.where(rng.random(24) < skill, y, rng.integers(0, 3, 24))
                    matrix = np.zeros((3, 3), int)
                    np.add.at(matrix, (y, pred), 1)
                    base = {"dataset": "hapt", "scenario": scenario, "user": user, "seed": 0, "method": m}
                    base |= {"status": "ok", "context": ctx, "context_name": name}
                    recall = np.diag(matrix) / matrix.sum(1)
                    block.append({**base, "metric": "balanced_accuracy", "value": float(recall.mean())})
                    block.append({**base, "metric": "confusion", "value": 24, "confusion": matrix.tolist()})
                block[-1]["unit_complete"] = True
                records += block
    (out / "results.jsonl").write_text(_jsonl(records))
    settings = {"dataset": "hapt", "metric": "balanced_accuracy", "configs": {}, "fairness": True}
    (out / "bench.json").write_text(json.dumps(settings))
    return out


def attribute_table(root: Path, field: str, values: tuple[str, ...]) -> Path:
    """An ``--attributes`` table: one column per value (``column``), a hostile group, or JSON."""
    groups = {2: "a", 8: "a", 14: "b", 20: "b"}
    if field == "json-column":
        path = root / "people.json"
        path.write_text(json.dumps({str(u): {values[0]: g} for u, g in groups.items()}))
        return path
    columns = list(values) if field == "column" else ["band"]
    path = root / "people.csv"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["user", *columns])
    for user, group in groups.items():
        group = values[0] if field == "group" and group == "a" else group
        writer.writerow([user, *([group] * len(columns))])
    path.write_text(buf.getvalue())
    return path


def model_dir(path: Path, **fields: str) -> Path:
    """A ``crop personalize`` directory (the shipped generic weights, a consistent summary)."""
    path.mkdir(parents=True)
    shutil.copyfile(SHIPPED, path / "model.safetensors")
    scores = {"available (test split)": {"balanced_accuracy": 0.5}, "unseen: session 2": {"balanced_accuracy": 0.5}}
    summary = {"dataset": "hapt", "user": 2, "scenario": "hapt-session:1", "method": "finetune", "seed": 0}
    summary |= {"metric": "balanced_accuracy", "scores": scores, "generic_scores": scores}
    summary |= {"generic_model": {"source": "shipped"}, **fields}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def setup_case(case: HostileCase, work: Path, assets: Path) -> tuple[list[str], Path]:
    """Create the case's files under ``work``; return the command line and the named output."""
    kind, field = case.target.split(":")
    values = case.value if isinstance(case.value, tuple) else (case.value,)
    if kind == "report":
        out = report_dir(work, field, values)
        return ["report", str(out)], out
    if kind == "fairness":
        table_field = field in ("column", "group", "json-column")
        out = fairness_dir(work, "method" if table_field else field, ("finetune",) if table_field else values)
        argv = ["fairness", str(out), "--resamples", "100"]
        if table_field:
            argv += ["--attributes", str(attribute_table(work, field, values))]
        return argv, out / "fairness"
    if kind == "card":
        root, cards = work / "models", work / "cards"
        if field == "dir":
            for v in values:
                model_dir(root / v)  # "a/b": a model directory two levels down
        else:
            model_dir(root / "u2", **{field: values[0]})
        return ["card", str(root), "--out", str(cards)], cards
    value = _value(case)
    named = work / value
    if field == "report":
        out = report_dir(work / "tmp", "method", ("finetune",))
        return ["report", str(_move_into(out, named))], named
    if field == "fairness":
        out = fairness_dir(work / "tmp", "method", ("finetune",))
        return ["fairness", str(_move_into(out, named)), "--resamples", "100"], named / "fairness"
    if field == "analyze":
        out = report_dir(work / "tmp", "method", ("finetune",))
        return ["analyze", str(_move_into(out, named))], named / "analysis"
    if field == "card":
        model_dir(work / "tmp")
        return ["card", str(_move_into(work / "tmp", named))], named
    if field == "certify":
        named.mkdir()  # a name that is not UTF-8 is made as the bytes it stands for
        argv = ["certify", "--model", str(assets / "model.safetensors"), "--data", str(assets / "data.npz")]
        return [*argv, "--out", str(named / "c.json")], named
    if field == "certify-raw":
        argv = ["certify", "--model", str(assets / "model.safetensors"), "--data", str(assets / "data.npz")]
        return [*argv, "--out", value], _first_new(work / value)
    if field == "report-raw":
        return ["report", value], _first_new(work / value)
    if field == "export":
        named.mkdir()
        return ["export", str(assets / "model.safetensors"), "--out", str(named / "m.onnx")], named
    if field == "personalize":
        return ["personalize", "--user", "2", "--method", "generic", "--out", str(named)], named
    if field == "bench":
        argv = ["bench", "--scenario", "hapt-session:1", "--users", "2", "--methods", "generic"]
        return [*argv, "--out", str(named), "--quiet"], named
    raise ValueError(case.target)


def _first_new(path: Path) -> Path:
    """The named output of a path given as it is (``a/b``, ``../victim/x``): its first part that
    does not exist yet (the command may create it and what lies below)."""
    path = Path(os.path.normpath(path))
    while not os.path.lexists(path.parent):
        path = path.parent
    return path


def _move_into(directory: Path, named: Path) -> Path:
    """Rename ``directory`` to ``named`` (whose name may not be UTF-8); return ``named``."""
    directory.rename(named)
    return named


# ------------------------------------------------------------------------------ checks


def snapshot(root: Path, skip: Path | None = None) -> dict[bytes, tuple]:
    """Every entry under ``root`` except below ``skip`` (links not followed), by bytes path."""
    out = {}
    base = os.fsencode(root)
    skipped = os.fsencode(skip) if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(base):
        if skipped is not None and (dirpath == skipped or dirpath.startswith(skipped + b"/")):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if skipped is not None and p == skipped:
                continue
            st = os.lstat(p)
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None
            out[os.path.relpath(p, base)] = (stat.S_IFMT(st.st_mode), st.st_size, mtime, st.st_mode)
    return out


def files_under(root: Path) -> dict[bytes, tuple]:
    if not os.path.isdir(os.fsencode(root)):
        return {}
    return {k: v for k, v in snapshot(root).items() if v[0] == stat.S_IFREG}


def check_text_file(path: bytes) -> None:
    raw = open(path, "rb").read()
    text = raw.decode("utf-8")  # valid UTF-8
    name = path.decode("utf-8", "surrogateescape")
    if name.endswith(".md"):  # code spans and fenced blocks show their content literally
        text = re.sub(r"(?ms)^(`{3,})[^\n]*\n.*?^\1$", "", text)
        text = re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", text)
        assert not re.search(r"(?<!\\)\]\((javascript|http)", text), name  # no link or image from data
    if name.endswith((".md", ".html")):
        lowered = text.lower()
        assert "<script" not in lowered, name
        assert not re.search(r"<img(?! src=\"data:image/png;base64,)", lowered), name
        assert not UNSAFE_OUTPUT.search(text.replace("\r\n", "\n")), name
        assert "</details><script" not in lowered, name
    if name.endswith(".csv"):
        for row in csv.reader(io.StringIO(text)):
            for cell in row:
                assert not cell.startswith(FORMULA) or cell == "-" or NUMBER.fullmatch(cell), (name, cell)


def check_case(case: HostileCase, assets: Path, tmp_path: Path, monkeypatch) -> tuple[int, Path, str]:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("must not change\n")
    work = tmp_path / "work"
    work.mkdir()
    argv, out = setup_case(case, work, assets)
    before = snapshot(tmp_path, skip=out)
    inputs = files_under(out)
    everything = snapshot(tmp_path)
    monkeypatch.chdir(work)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = run(argv)
    torch.set_num_threads(1)  # as the other in-process suites: the command set it
    err, shown = stderr.getvalue(), stdout.getvalue() + stderr.getvalue()
    lines = err.splitlines()
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 2), f"exit {code}: {err!r}"
    assert not UNSAFE_OUTPUT.search(shown), f"a control character reached the terminal: {shown!r}"
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("crop: error: "), err
        assert snapshot(tmp_path) == everything, "a refused case wrote or changed a file"
        return code, out, err
    assert all(line.startswith("crop: warning: ") for line in lines), err
    assert snapshot(tmp_path, skip=out) == before, "a file outside the named output was written or changed"
    after = files_under(out)
    for rel, entry in inputs.items():
        assert after.get(rel) == entry, f"an existing file changed: {rel!r}"
    out_rel = os.path.relpath(os.fsencode(out), os.fsencode(tmp_path))
    for rel in set(after) - set(inputs):
        parts = rel.split(b"/")
        for i, part in enumerate(parts):  # every entry the command created is named by crop.safe_names
            if not case.target.endswith("-raw") and os.path.join(out_rel, *parts[: i + 1]) not in everything:
                assert SAFE_NAME.fullmatch(part.decode("ascii", "replace")), f"unsafe file name {rel!r}"
        full = os.path.join(os.fsencode(out), rel)
        if full.endswith((b".md", b".html", b".csv", b".json")):
            check_text_file(full)
        if full.endswith(b".png"):
            assert os.path.getsize(full) > 1000
    return code, out, err


def check_collisions(case: HostileCase, out: Path) -> None:
    """As many files as names: no two names of the set share one."""
    names = [os.fsdecode(p) for p in files_under(out)]
    n = len(case.value)
    if case.target == "report:scenario":
        assert len([p for p in names if p.startswith("robustness-")]) == n, names
    elif case.target == "fairness:column":  # one table per column, besides the built-in activity and context
        groups = [p for p in names if "-groups-" in p and not p.endswith(("-activity.csv", "-context.csv"))]
        assert len(groups) == n, names
    elif case.target == "fairness:scenario":
        assert len([p for p in names if p.startswith("group-gains-")]) == n, names
        assert len([p for p in names if p.endswith("-people.csv")]) == n, names
    elif case.target == "card:dir":
        assert len([p for p in names if p.endswith(".html")]) == n, names


def run_hostile(case: HostileCase, assets: Path, tmp_path: Path, monkeypatch) -> None:
    code, out, err = check_case(case, assets, tmp_path, monkeypatch)
    if case.cls == "collision":  # as many files as names, or refused before anything is written
        assert code == 0 or "would both be written to" in err, err
        if code == 0:
            check_collisions(case, out)
    if case.cls == "traversal" and case.target.startswith(("report:", "fairness:")) and code == 0:
        assert sorted(os.listdir(tmp_path / "victim")) == ["keep.txt"]


# ------------------------------------------------------------------------------ the suites


@pytest.mark.parametrize("case", FAST, ids=[c.id for c in FAST])
def test_hostile_strings_fast_subset(case, assets, tmp_path, monkeypatch):
    run_hostile(case, assets, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL, ids=[c.id for c in FULL])
def test_hostile_strings_full_list(case, assets, tmp_path, monkeypatch):
    run_hostile(case, assets, tmp_path, monkeypatch)


def test_the_hostile_list_is_large_and_covers_every_class_and_writer():
    assert len(FULL) >= 400 and len({(c.target, c.value) for c in FULL}) == len(FULL)
    assert 20 <= len(FAST) <= 60
    assert {c.cls for c in FULL} == {*HOSTILE, "non-utf8", "collision"}
    assert {c.target.split(":")[0] for c in FAST} == {"report", "fairness", "card", "path"}
    assert any(v in NON_UTF8 for c in FAST for v in ([c.value] if isinstance(c.value, str) else c.value))


# ------------------------------------------------------------------------------ the rules themselves

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from crop.errors import CropError  # noqa: E402
from crop.report.escape import csv_cell, markdown_code, markdown_text, visible  # noqa: E402
from crop.safe_names import distinct, file_name, inside, name_part  # noqa: E402

ALL_HOSTILE = [v for values in HOSTILE.values() for v in values] + NON_UTF8
# Any text, control characters, bidi controls and lone surrogates included.
TEXT = st.text(st.characters(codec=None, categories=None), max_size=80) | st.sampled_from(ALL_HOSTILE)


def test_name_part_keeps_plain_names_and_maps_scenarios_as_before():
    for plain in ("crop", "wise-ft", "generic_accuracy", "dead-gyro", "crop-l0", "u2", "a.b", "x" * 64):
        assert name_part(plain) == plain
    assert name_part("hapt-session:1") == "hapt-session-1" and name_part("hapt-rot:12") == "hapt-rot-12"
    assert file_name("robustness", "hapt-session:2", suffix=".png") == "robustness-hapt-session-2.png"
    for odd in ("hapt-session-1", "Hand", "a b", "x" * 65, "..", "", "a--b", "-a", "a-", "hapt-session:1234567"):
        assert re.fullmatch(r"[a-z0-9-]{1,40}--[0-9a-f]{10}", name_part(odd)), odd


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_every_name_is_one_safe_component(text):
    name = name_part(text)
    assert SAFE_NAME.fullmatch(name) and len(name) <= 64 and name not in (".", "..")
    assert inside("/some/dir", name) == Path("/some/dir") / name


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_different_strings_get_different_names(a, b):
    if a != b:
        assert name_part(a) != name_part(b)


def test_names_that_differ_only_in_case_or_punctuation_differ():
    from tests.robustness_hostile import COLLISIONS

    for values in COLLISIONS:
        names = [name_part(v) for v in values]
        assert len(set(names)) == len(values) and len({n.lower() for n in names}) == len(values), names


def test_inside_refuses_anything_but_one_component_in_its_directory(tmp_path):
    for bad in ("", ".", "..", "a/b", "../x", "/etc/x", "a\0b", "x" * 256):
        with pytest.raises(CropError, match="not a plain file name"):
            inside(tmp_path, bad)
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "out" / "link.png")
    with pytest.raises(CropError, match="resolves outside"):
        inside(tmp_path / "out", "link.png")
    assert inside(tmp_path / "out", "fine.png") == tmp_path / "out" / "fine.png"


def test_distinct_refuses_two_sources_for_one_file():
    distinct([("a", Path("x")), ("a", Path("x")), ("b", Path("y"))])
    with pytest.raises(CropError, match="would both be written to x"):
        distinct([("a", Path("x")), ("b", Path("x"))])


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_visible_leaves_nothing_a_terminal_acts_on(text):
    shown = visible(text)
    assert not UNSAFE_OUTPUT.search(shown) and "\n" not in shown and "\t" not in shown
    shown.encode("utf-8")  # printable and writable whatever the bytes were
    assert visible(shown) == shown


def test_visible_names_each_character():
    assert visible("a\x1b]52;c;aGk=\x07") == "a\\x1b]52;c;aGk=\\x07"
    assert visible("x\ny\tz\r") == "x\\ny\\tz\\r" and visible("x\ny\t", keep_lines=True) == "x\ny\t"
    assert visible("bench\udcff") == "bench\\xff" and visible("\u202eevil\x9b") == "\\u202eevil\\x9b"
    assert visible("plain é ü 中") == "plain é ü 中"


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_markdown_text_renders_as_the_literal_text(text):
    from markdown_it import MarkdownIt
    from markdown_it.common.utils import escapeHtml

    md = MarkdownIt("commonmark").enable("table")
    expected = escapeHtml(visible(text))
    assert md.render(f"x {markdown_text(text)} x") == f"<p>x {expected} x</p>\n"
    table = md.render(f"| a | b |\n|---|---|\n| {markdown_text(text)} | {markdown_code(text, in_table=True)} |\n")
    cells = re.findall(r"<td>(.*?)</td>", table, re.S)
    assert cells[0].strip() == expected.strip() and len(cells) == 2, table  # a cell trims its edges


def test_markdown_keeps_crops_own_numbers_readable():
    for text in ("+2.3 [1.0, 3.5]", "85.1 ± 2.0", "generic_accuracy", "Δ_P (vs generic)", "p >= 0.05", "R&D"):
        assert markdown_text(text) == text


@settings(max_examples=200, deadline=None)
@given(st.one_of(TEXT, st.integers(), st.floats(allow_nan=True), st.none()))
def test_csv_cells_never_start_a_formula(value):
    cell = csv_cell(value)
    if not isinstance(value, str):
        assert cell is value
        return
    buf = io.StringIO()
    csv.writer(buf).writerow([cell])
    (back,) = next(csv.reader(io.StringIO(buf.getvalue())))
    assert back == cell and (not cell.startswith(FORMULA) or cell == "-" or NUMBER.fullmatch(cell))
    same = value.replace("\r\n", "\n").replace("\r", "\n")  # a CR inside text is a newline (quoted)
    assert cell in (same, "'" + same)


def test_csv_numbers_stay_numbers():
    for text in ("-1.5", "+2", "1e-3", "-inf", "-", "0.25", "hand", "a=b"):
        assert csv_cell(text) == text
    for text in ("=1+1", "+cmd|x", "-2+3", "@SUM(A1)", "\t=1", "\n=1", "+2.3 ± 0.5"):
        assert csv_cell(text) == "'" + text
    assert csv_cell("\r=1") == "'\n=1" and csv_cell("a\rb") == "a\nb"


def test_figures_draw_data_as_text(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crop.report.escape import plain_figure_text

    fig, ax = plt.subplots()
    ax.set_xticks([0, 1, 2], ["$\\frac{$", "bench\udcff", "esc\x1b[2J"])
    ax.set_title("$x^2$ and $\\undefinedmacro{y}$")
    ax.plot([0, 1, 2], [1, 10, 1000], label="a$b$c")
    ax.set_yscale("symlog")
    ax.legend()
    plain_figure_text(plain_figure_text(fig)).tight_layout()  # a second call changes nothing
    fig.savefig(tmp_path / "f.png")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["\\$\\frac{\\$", "bench\\xff", "esc\\x1b[2J"]
    assert ax.title.get_text() == "\\$x^2\\$ and \\$\\undefinedmacro{y}\\$"
    assert any("mathdefault" in t.get_text() for t in ax.get_yticklabels())  # crop's own numbers: still math
    plt.close(fig)


def test_the_console_prints_data_literally(capsys):
    from crop.report.console import DataConsole, data_progress, data_status

    console = DataConsole(width=200)
    console.print("[bold]x[/bold] [/x] :thumbs_up: a\x1b]52;c;aGk=\x07b line\nbreak bench\udcff")
    with data_status(console, "[/x]\x1b[2J") as say:
        say("[red]\x07")
    with data_progress(console=console) as bar:
        task = bar.add_task("[/x]\x1b]0;t\x07", total=1)
        bar.update(task, description="[bold]\x9b", advance=1)
    out = capsys.readouterr().out
    assert "[bold]x[/bold] [/x] :thumbs_up: a\\x1b]52;c;aGk=\\x07b line\\nbreak bench\\xff" in out
    assert "\x1b]" not in out and "\x07" not in out and "\x9b" not in out
