"""The results page (``crop report DIR`` writes ``DIR/index.html``, issue 22): built from a small
bench directory (five people, two scenarios, one of them named by an attacker, robustness
records, a fault sweep, a failed run and a fairness summary), parsed back with ``html.parser``
and compared with ``table.md`` and the figure files."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crop.cli import app
from crop.report.table import Table

HOSTILE = "<img src=x onerror=alert(1)>"
SCENARIOS = ("hapt-session:1", HOSTILE)
USERS = (2, 8, 14, 20, 26)
METHODS = ("generic", "finetune", "crop")


def _records() -> list[dict]:
    rng = np.random.default_rng(0)
    records = []
    for scenario in SCENARIOS:
        for method in METHODS:
            for user in USERS:
                base = {"dataset": "hapt", "scenario": scenario, "user": user, "seed": 0, "method": method}
                base["status"] = "ok"
                block = []
                contexts = [("available", "session 1"), ("unseen", "session 2"), ("unseen", "dead-gyro=0.5")]
                for context, name in contexts:
                    ctx = {**base, "context": context, "context_name": name}
                    block.append({**ctx, "metric": "balanced_accuracy", "value": float(rng.uniform(0.5, 0.9))})
                    block.append({**ctx, "metric": "accuracy", "value": float(rng.uniform(0.5, 0.9))})
                    for kind in ("verified", "pgd"):
                        block.append(
                            {**ctx, "metric": f"{kind}@linf:0.01", "value": 0.4, "norm": "linf", "radius": 0.01}
                        )
                block[-1]["unit_complete"] = True
                records += block
    failed = {"dataset": "hapt", "scenario": SCENARIOS[0], "user": 2, "seed": 0, "method": "crop-paper"}
    records.append({**failed, "status": "failed", "error": "diverged <b>|x|</b>", "unit_complete": True})
    return records


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("page") / "bench"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    settings = {"dataset": "hapt", "metric": "balanced_accuracy", "configs": {"crop": {"tau": 0.1}}, "tune": False}
    (out / "bench.json").write_text(json.dumps(settings))
    (out / "fairness").mkdir()
    fair = Table(f"{HOSTILE}: people, unseen context", ["method", "worst | person"], [["crop", "-3.1 [-5.0, -1.2]"]])
    (out / "fairness" / "summary.md").write_text(fair.markdown_section(3), encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


class Page(HTMLParser):
    """Tables (cell texts), images, ids, links, and anything a browser would run or fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.images: list[str] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.active: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        for name, value in attrs.items():
            value = value or ""
            if name.startswith("on") or re.search(r"https?:|^//|url\(", value, re.IGNORECASE):
                self.active.append((tag, name, value))
            if name in ("src", "href") and not value.startswith(("#", "data:image/png;base64,")):
                self.active.append((tag, name, value))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _md_cells(line: str) -> list[str]:
    """One Markdown table row as the texts a viewer shows (escapes undone)."""
    inner = line.strip()[1:-1]
    cells = re.split(r"(?<!\\)\|", inner)
    return [re.sub(r"\\(.)", r"\1", c.strip()).replace("&lt;", "<").replace("&amp;", "&") for c in cells]


def markdown_tables(text: str) -> list[list[list[str]]]:
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if re.fullmatch(r"\|(-+\|)+", line.replace(" ", "")):
                continue
            if current is None:
                current = []
                tables.append(current)
            current.append(_md_cells(line))
        else:
            current = None
    return tables


def test_every_table_of_table_md_is_on_the_page_with_the_same_cells(bench):
    out, _ = bench
    page = parse(out / "index.html")
    expected = markdown_tables((out / "table.md").read_text(encoding="utf-8"))
    assert len(expected) >= 12  # summary, gains x2, seeds, per user x4, contexts x2, harm x2, ...
    for table in expected:
        assert table in page.tables, table[:2]
    html_text = (out / "index.html").read_text(encoding="utf-8")
    assert 'class="num"' in html_text and '<span class="ci">[' in html_text  # numbers aligned, intervals set apart


def test_every_figure_written_is_embedded(bench):
    out, _ = bench
    page = parse(out / "index.html")
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in page.images}
    figures = sorted(out.rglob("*.png"))
    names = {p.relative_to(out).as_posix() for p in figures}
    assert {"deltas.png", "gains.png", "harm.png"} <= names
    assert any(n.startswith("robustness-") for n in names) and any(n.startswith("faults/fault-") for n in names)
    for path in figures:
        assert path.read_bytes() in embedded, path
    assert len(page.images) == len(figures)


def test_the_page_runs_and_fetches_nothing(bench):
    out, _ = bench
    page = parse(out / "index.html")
    source = (out / "index.html").read_text(encoding="utf-8")
    assert "<script" not in source.lower()
    assert not {"script", "link", "iframe", "object", "embed", "base", "form"} & page.tags
    assert page.active == []
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", source, re.IGNORECASE)


def test_a_hostile_scenario_name_is_shown_as_text(bench):
    out, _ = bench
    source = (out / "index.html").read_text(encoding="utf-8")
    page = parse(out / "index.html")
    assert HOSTILE not in source and "<b>" not in source
    assert "&lt;img src=x onerror=alert(1)&gt;" in source
    assert any(HOSTILE in t for t in page.text)  # a reader sees the name as written
    assert [i for i in page.images if not i.startswith("data:image/png;base64,")] == []
    assert ["crop-paper"] == [row[3] for t in page.tables for row in t if row[-1:] == ["diverged <b>|x|</b>"]]


def test_header_contents_and_console(bench):
    out, output = bench
    page = parse(out / "index.html")
    settings = {row[0]: row[1] for t in page.tables for row in t if len(row) == 2}
    assert settings["scenarios"] == f"2: {HOSTILE}, hapt-session:1"
    assert settings["methods"] == "4: generic, finetune, crop, crop-paper"
    assert settings["users"] == "5: 2, 8, 14, 20, 26"
    assert settings["seeds"] == "1: 0"
    assert settings["metric"] == "balanced_accuracy"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", settings["results written"])
    sections = ["bench", "summary", "gains", "harm", "seeds", "per-user", "contexts", "robustness", "faults"]
    assert [link[1:] for link in page.links] == [*sections, "fairness", "failed"]
    assert set(sections) <= page.ids  # every entry of the contents leads somewhere
    assert output.rstrip().splitlines()[-1] == f"wrote {out / 'index.html'}"


def test_fairness_summary_tables_are_on_the_page(bench):
    out, _ = bench
    page = parse(out / "index.html")
    assert [["method", "worst | person"], ["crop", "-3.1 [-5.0, -1.2]"]] in page.tables


def test_a_second_report_replaces_the_page(bench, tmp_path):
    out, _ = bench
    before = (out / "index.html").read_text(encoding="utf-8")
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    after = (out / "index.html").read_text(encoding="utf-8")
    assert after.count("<!DOCTYPE html>") == 1
    strip = re.compile(r"page written</td><td>[^<]*")  # the one line that may differ: the time
    assert strip.sub("", before) == strip.sub("", after)


def test_an_index_that_is_not_a_regular_file_is_refused(tmp_path):
    out = tmp_path / "b"
    out.mkdir()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()[:30]), encoding="utf-8")
    (out / "index.html").mkdir()
    result = CliRunner().invoke(app, ["report", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crop: error: "), result.output
    assert not (out / "table.md").exists()  # refused before anything was written
