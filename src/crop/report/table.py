"""The one table type of crop: raw values for CSV, formatted cells for Markdown."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crop.report.escape import csv_row, markdown_text
from crop.report.files import write_text_atomic

Formatter = Callable[[Any], str]


def fmt_pct(v: Any) -> str:
    """A fraction as a percentage with one decimal (``0.8512`` -> ``85.1``)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def fmt_delta(v: Any) -> str:
    """A difference of fractions in signed percentage points (``0.023`` -> ``+2.3``)."""
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:+.1f}"


def fmt_sci(v: Any) -> str:
    """Three significant digits, scientific when far from 1."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and v != 0 and not 1e-2 <= abs(v) < 1e4:
        return f"{v:.2e}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


@dataclass
class Table:
    """``rows`` hold raw values (written to CSV as they are, text cells neutralized against
    spreadsheet formulas); ``formats`` maps a column to the function rendering it in Markdown
    (default ``str`` / :func:`fmt_sci` for floats). Title, header, cells and note are data: the
    Markdown and CSV writers escape them (:mod:`crop.report.escape`)."""

    title: str
    header: list[str]
    rows: list[list[Any]]
    formats: dict[str, Formatter] = field(default_factory=dict)
    note: str = ""
    kind: str = ""  # what the table is (e.g. "summary", "gains", "per_user"), for callers that pick one

    def cell(self, column: str, value: Any) -> str:
        if column in self.formats:
            return self.formats[column](value)
        return fmt_sci(value) if isinstance(value, float) else ("-" if value is None else str(value))

    def markdown(self) -> str:
        """The table in Markdown, every header and cell escaped (:func:`markdown_text`)."""
        lines = [f"| {' | '.join(markdown_text(h) for h in self.header)} |"]
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        for row in self.rows:
            cells = (markdown_text(self.cell(c, v)) for c, v in zip(self.header, row, strict=True))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def markdown_section(self, level: int = 2) -> str:
        """A Markdown heading (the title) of ``level``, the table, and the note, all escaped."""
        text = f"{'#' * level} {markdown_text(self.title)}\n\n{self.markdown()}\n"
        return text + (f"\n{markdown_text(self.note)}\n" if self.note else "")

    def csv(self) -> str:
        """The raw rows as CSV, text cells neutralized (:func:`crop.report.escape.csv_cell`)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(csv_row(self.header))
        writer.writerows([csv_row("" if v is None else v for v in row) for row in self.rows])
        return buf.getvalue()

    def write(self, out_dir: Path, stem: str) -> tuple[Path, Path]:
        """``<stem>.md`` and ``<stem>.csv`` in ``out_dir`` (``stem``: one plain file name,
        :func:`crop.safe_names.inside`)."""
        from crop.safe_names import inside

        md_path, csv_path = inside(out_dir, f"{stem}.md"), inside(out_dir, f"{stem}.csv")
        return write_text_atomic(md_path, self.markdown_section(3)), write_text_atomic(csv_path, self.csv())


def column_order(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """``preferred`` names present in ``names`` first (in that order), then the rest."""
    return [n for n in preferred if n in names] + [n for n in names if n not in preferred]
