"""The results page of a bench directory: ``DIR/index.html`` (written by ``crop report``).

One self-contained page, as the report card (:mod:`crop.report.card_render`, whose pieces it
uses): styles inline, system fonts, figures as ``data:image/png;base64`` URIs, no script and no
reference to anything outside the file. It holds every table of ``table.md`` (the same cells;
numbers right-aligned, a 95 % interval set beside its mean), every figure the same ``crop
report`` wrote, a header that says which bench it shows (``bench.json``, the people, seeds,
scenarios and methods of ``results.jsonl``, ``command.txt`` where someone saved the command
line) and when, and a table of contents of in-page anchors.

Every string that comes from the directory (scenario, method, user, context names, errors, the
settings, ``command.txt``) is data: escaped by :func:`crop.report.escape.html_text`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from crop.errors import CropError
from crop.report.card_render import STYLE, document, figure_html, html_table, section_html
from crop.report.escape import html_text, visible
from crop.report.table import Table

PAGE = "index.html"
COMMAND_FILE = "command.txt"
MAX_COMMAND_CHARS = 4000  # a command.txt longer than this is cut (and says so)

PAGE_STYLE = (
    STYLE
    + """
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.num .ci { color: #555; font-size: .85em; }
nav ol { margin: .3rem 0; padding-left: 1.4rem; columns: 2; } nav a { text-decoration: none; }
h3 { font-size: 1rem; margin-bottom: .2rem; } .note { font-size: .85rem; color: #555; margin-top: 0; }
.scroll { overflow-x: auto; }
"""
)

# A cell holding a number crop wrote: "+2.30", "85.1", "-", "12 %", "3 of 10", "+1.2 ± 0.4",
# "+2.30 [1.00, 3.50]", "0.031", "2/0/1", "-3.10 (user 8)".
_NUMERIC_CELL = re.compile(
    r"-|(<\s*)?[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*%?"
    r"(\s*(±|of)\s*\d+(\.\d*)?|/\d+/\d+)?(\s*\[[^\[\]]*\])?(\s\(user [^()]*\))?",
    re.IGNORECASE,
)
_INTERVAL = re.compile(r"^(.*\S)(\s+)(\[[^\[\]]*\])$")


@dataclass
class PageSection:
    key: str
    title: str
    parts: list[str] = field(default_factory=list)


def _is_number(text: str) -> bool:
    return bool(_NUMERIC_CELL.fullmatch(text.strip()))


def _cell(text: str) -> str:
    """A data cell as HTML: escaped; a trailing interval ``[low, high]`` of a number set in its
    own span (kept on one line with its mean, a little lighter)."""
    m = _INTERVAL.match(text)
    if m and _is_number(text):
        return f'{html_text(m.group(1))}{html_text(m.group(2))}<span class="ci">{html_text(m.group(3))}</span>'
    return html_text(text)


def table_html(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> str:
    """One table of the page: ``title`` as a heading, cells escaped, numbers right-aligned."""
    body = html_table(
        "", list(header), [list(r) for r in rows], cell=_cell, cell_class=lambda c: "num" if _is_number(c) else None
    )
    parts = [f"<h3>{html_text(title)}</h3>"] if title else []
    parts.append(f'<div class="scroll">{body}</div>')
    if note:
        parts.append(f'<p class="note">{html_text(note)}</p>')
    return "\n".join(parts)


def crop_table_html(t: Table) -> str:
    """A :class:`crop.report.table.Table` with the cells ``table.md`` shows (:meth:`Table.cell`)."""
    rows = [[t.cell(c, v) for c, v in zip(t.header, row, strict=True)] for row in t.rows]
    return table_html(t.title, t.header, rows, t.note)


# ------------------------------------------------------------------------------- Markdown tables

_MD_ESCAPE = re.compile(r"\\(.)|&lt;|&amp;")


def _md_plain(text: str) -> str:
    """The text :func:`crop.report.escape.markdown_text` escaped, back as it was."""
    return _MD_ESCAPE.sub(lambda m: m.group(1) or {"&lt;": "<", "&amp;": "&"}[m.group()], text.strip())


def _md_cells(line: str) -> list[str]:
    """The cells of a Markdown table row (``|`` inside a cell is escaped as ``\\|``)."""
    cells, current, i, body = [], [], 0, line.strip()
    body = body[1:] if body.startswith("|") else body
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            current.append(body[i : i + 2])
            i += 2
            continue
        if char == "|":
            cells.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    if "".join(current).strip():
        cells.append("".join(current))
    return [_md_plain(c) for c in cells]


def markdown_tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """``(title, header, rows)`` of each table in a Markdown fragment crop wrote (a heading
    before it is its title), cells unescaped to the text they show."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    title, lines = "", text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            title = _md_plain(line.lstrip("#"))
        elif line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1]):
            header = _md_cells(line)
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_md_cells(lines[i]))
                i += 1
            tables.append((title, header, rows))
            continue
        i += 1
    return tables


# ------------------------------------------------------------------------------------- the page


def _when(path: Path) -> str:
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return "-"
    return datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _listing(values: Sequence[Any], limit: int = 40) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return f"{len(values)}: {shown}" + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


def _id_order(value: Any) -> tuple[bool, int, str]:
    """Numbers in numeric order, then anything else by its text."""
    number = isinstance(value, int) and not isinstance(value, bool)
    return (not number, value if number else 0, str(value))


def _setting(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _header(out: Path, records: list[dict[str, Any]], metric: str, dataset: str, settings: dict[str, Any]) -> list[str]:
    from crop.report.tables import METHOD_ORDER, _ordered

    ok = [r for r in records if r.get("status") == "ok"]
    scenarios = sorted({str(r.get("scenario")) for r in records if "scenario" in r})
    methods = _ordered({str(r.get("method")) for r in records if "method" in r}, METHOD_ORDER)
    users = sorted({r.get("user") for r in records if "user" in r}, key=_id_order)
    seeds = sorted({r.get("seed") for r in records if "seed" in r}, key=_id_order)
    units = {(r.get("scenario"), r.get("method"), r.get("user"), r.get("seed")) for r in ok}
    failed = sum(1 for r in records if r.get("status") == "failed")
    rows = [
        ["directory", visible(str(out))],
        ["dataset", dataset],
        ["metric", metric],
        ["scenarios", _listing(scenarios)],
        ["methods", _listing(methods)],
        ["users", _listing(users)],
        ["seeds", _listing(seeds)],
        ["finished units", str(len(units))],
        ["failed runs", str(failed)],
    ]
    for key in sorted(settings):
        if key not in ("dataset", "metric", "configs") and settings[key] not in (None, False):
            rows.append([f"bench.json: {key}", _setting(settings[key])])
    rows += [["results written", _when(out / "results.jsonl")]]
    rows += [["page written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")]]
    parts = [table_html("", ["setting", "value"], rows)]
    command = out / COMMAND_FILE
    if command.is_file():
        try:
            text = command.read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
        cut = len(text) > MAX_COMMAND_CHARS
        text = visible(text[:MAX_COMMAND_CHARS], keep_lines=True).rstrip()
        parts.append(f"<h3>{COMMAND_FILE}{' (cut)' if cut else ''}</h3>\n<pre>{html.escape(text)}</pre>")
    configs = settings.get("configs")
    if isinstance(configs, dict) and configs:
        body = html.escape(visible(json.dumps(configs, indent=2, sort_keys=True, default=str), keep_lines=True))
        parts.append(f"<details><summary>method configurations (bench.json)</summary><pre>{body}</pre></details>")
    return parts


# (key, heading, table kinds, figure name patterns)
LAYOUT: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("summary", "Δ_P and Δ_G over people", ("summary",), ("deltas.png",)),
    ("gains", "Gains over people", ("gains",), ("gains.png",)),
    ("harm", "Who loses", ("harm",), ("harm.png",)),
    ("seeds", "Variation over seeds", ("seeds",), ()),
    ("per-user", "Per-user accuracy", ("per_user", "per_user_std"), ()),
    ("contexts", "Accuracy per context", ("contexts",), ()),
    ("robustness", "Robustness", ("robustness",), ("robustness-",)),
    ("faults", "Fault severity sweeps", ("fault_sweep",), ("faults/",)),
)

CAPTIONS = {
    "deltas.png": "Δ_P and Δ_G per method: mean over users with the 95 % bootstrap interval.",
    "gains.png": "Per-person gain over conventional finetuning: dots are people, the diamond the mean with its interval.",
    "harm.png": "Who loses: each person's unseen-context change against the generic model.",
}


def render_page(
    out: Path,
    records: list[dict[str, Any]],
    metric: str,
    dataset: str,
    tables: Sequence[Table],
    figures: Sequence[Path],
    settings: dict[str, Any] | None = None,
    fairness_md: str | None = None,
) -> str:
    """The page's HTML. ``tables``: those of ``table.md`` (crop's :class:`Table`, sorted into
    sections by ``kind``); ``figures``: the PNG files written beside it (each embedded);
    ``fairness_md``: the fairness summary fragment ``table.md`` includes (its tables are shown)."""
    from crop.report.tables import failures

    settings = settings or {}
    sections = [PageSection("bench", "Bench", _header(out, records, metric, dataset, settings))]
    placed: set[int] = set()
    figure_names = [(p, p.relative_to(out).as_posix() if p.is_relative_to(out) else p.name) for p in figures]
    shown: set[Path] = set()
    for key, title, kinds, patterns in LAYOUT:
        section = PageSection(key, title)
        for i, t in enumerate(tables):
            if t.kind in kinds and i not in placed:
                section.parts.append(crop_table_html(t))
                placed.add(i)
        for path, name in figure_names:
            if path not in shown and any(
                name == p or (p.endswith(("-", "/")) and name.startswith(p)) for p in patterns
            ):
                section.parts.append(_figure(path, name))
                shown.add(path)
        sections.append(section)
    rest = PageSection("other", "Other tables", [crop_table_html(t) for i, t in enumerate(tables) if i not in placed])
    rest.parts += [_figure(p, name) for p, name in figure_names if p not in shown]
    sections.append(rest)
    if fairness_md:
        fair = PageSection("fairness", "Fairness (full report: fairness/fairness.md)")
        fair.parts = [table_html(title, header, rows) for title, header, rows in markdown_tables(fairness_md)]
        sections.append(fair)
    failed = failures(records)
    if failed:
        keys = ("scenario", "user", "seed", "method", "error")
        rows = [[visible(r.get(k, "")) for k in keys] for r in failed]
        sections.append(PageSection("failed", "Failed runs", [table_html("Failed runs", list(keys), rows)]))
    sections = [s for s in sections if s.parts]
    toc = "".join(f'<li><a href="#{html_text(s.key)}">{html_text(s.title)}</a></li>' for s in sections)
    body = [f"<nav><h2>Contents</h2><ol>{toc}</ol></nav>"]
    body += [section_html(s.key, s.title, s.parts) for s in sections]
    body.append(
        "<footer>Written by <code>crop report</code> from <code>results.jsonl</code> and <code>bench.json</code> "
        "of this directory; the tables are those of <code>table.md</code> (raw values: <code>tables/*.csv</code>)."
        "</footer>"
    )
    title = f"Benchmark results: {visible(out.name) or visible(str(out))} ({dataset}, {metric})"
    return document(title, "\n".join(body) + "\n", PAGE_STYLE)


def _figure(path: Path, name: str) -> str:
    caption = CAPTIONS.get(name, "")
    shown = f"<code>{html_text(name)}</code>" + (f": {html_text(caption)}" if caption else "")
    try:
        png = path.read_bytes()
    except OSError as exc:
        raise CropError(f"cannot read {path}: {exc.strerror or exc}") from None
    return figure_html(png, f"{name}: {caption}" if caption else name, shown)


def write_page(out: Path, *args: Any, **kwargs: Any) -> Path:
    """:func:`render_page` written atomically to ``out/index.html``."""
    from crop.report.files import write_text_atomic

    return write_text_atomic(out / PAGE, render_page(out, *args, **kwargs))
