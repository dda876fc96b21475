"""One rule for every string shown to a person: data is text, escaped for the medium it lands in.

Strings that ``crop`` reads from files or options (a scenario, method, context or user of
``results.jsonl``, a column or group of ``--attributes``, a directory name, an error text) reach
people through five media, and each of them would otherwise read some of that text as
instructions:

* **terminal** (rich console): ``[bold]`` / ``[/x]`` would be read as markup (``[/x]`` fails),
  ``:name:`` as an emoji, and ``ESC ]52;...`` writes the clipboard, other escape sequences move
  the cursor or hide text. Rule: markup and emoji off for data; control characters, bidi controls
  and lone surrogates shown as ``\\xNN`` / ``\\uNNNN`` (:func:`visible`, :mod:`crop.report.console`).
* **Markdown** (``.md``): raw HTML (``<script>``, ``<img onerror=...>``), links and images,
  emphasis, code spans, ``$...$`` math (GitHub), a ``|`` that splits a table cell. Rule:
  :func:`visible`, then ``<`` and an entity-like ``&`` as HTML entities, and a backslash before
  ``\\ ` * ~ | $``, ``_`` at a word edge and a link-closing ``]`` (:func:`markdown_text`; code
  spans and fences: :func:`markdown_code`, :func:`markdown_fence`).
* **HTML** (``card.html``): elements and attributes. Rule: :func:`visible`, then ``html.escape``
  (:func:`html_text`).
* **CSV** (``.csv``): ``=HYPERLINK(...)``, ``+cmd|...`` run as formulas when a spreadsheet opens
  the file; a bare CR ends a row there. Rule: a text cell starting with ``= + - @``, tab, CR or
  newline gets a leading ``'``; numbers, numeric text and the lone ``-`` stay as they are; a CR
  inside text becomes a newline, which the csv module quotes (:func:`csv_cell`).
* **figures** (matplotlib): ``$...$`` read as mathtext (an error on bad TeX, or a formula drawn).
  Rule: every text of the figure through :func:`visible` (newlines kept) and each ``$`` escaped
  (:func:`plain_figure_text`).

Escaping happens where a string enters its medium (a table cell, a Markdown line, a console
print), never earlier: the records themselves keep the original text, and the one place per
medium is small enough to audit. File names made from data follow their own rule,
:mod:`crop.safe_names`.

Non-UTF-8 names (bytes that Python carries as lone surrogates, ``\\udcff`` for byte ``0xff``)
are shown as the byte they stand for (``\\xff``), so printing or writing them never fails.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

# C0 and C1 control characters (ESC, BEL, CSI 0x9b ...), DEL, the line and paragraph
# separators, the bidirectional controls that reorder what a reader sees (Trojan-source style),
# and surrogates (an undecodable byte of a file name).
_TAIL = r"\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_CONTROL = re.compile(r"[\x00-\x1f" + _TAIL + "]")
_CONTROL_KEEP_LINES = re.compile(r"[\x00-\x08\x0b-\x1f" + _TAIL + "]")  # newline and tab kept
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _show(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: Any, *, keep_lines: bool = False) -> str:
    """``text`` as a string whose control characters are visible escapes, so nothing in it can
    act on a terminal, a viewer or a parser: ``"a\\x1b]52;c;...\\x07"`` -> ``"a\\\\x1b]52;c;...\\\\x07"``.

    Escaped: C0/C1 controls (ESC, BEL, NUL, CR, CSI ...), DEL, U+2028/U+2029, bidi controls
    (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C) and surrogates (a byte ``0xNN`` that was not
    UTF-8 is shown as ``\\xNN``). ``keep_lines`` keeps newline and tab (text that crop lays out
    itself); data shown on one line leaves it ``False``."""
    text = text if isinstance(text, str) else str(text)
    pattern = _CONTROL_KEEP_LINES if keep_lines else _CONTROL
    return pattern.sub(_show, text) if pattern.search(text) else text


# ------------------------------------------------------------------------------------- Markdown

_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# A backslash before: backslash, backtick (code span), * and ~ (emphasis, strikethrough), | (a
# table cell), $ (math on GitHub and other renderers), _ at a word edge (emphasis; between two letters or digits it is none), and a ]
# that would close a link, image, reference or definition (followed by "(", "[" or ":"; an
# interval "[1.0, 3.5]" stays as it is).
_MD_SPECIAL = re.compile(r"[\\`*|~$]|(?<![^\W_])_|_(?![^\W_])|\](?=[(\[:])")


def markdown_text(value: Any) -> str:
    """``value`` as literal text inside a Markdown line or table cell.

    :func:`visible` first (a newline would end a table row or start a block), then ``<`` (and
    an ``&`` that starts an entity) become HTML entities, so no raw HTML reaches a viewer, and
    the characters that open emphasis, code spans, links or table cells get a backslash
    (``_MD_SPECIAL``). Renders as the original text: ``<b>x</b>|[y](z)`` is shown as written,
    and crop's own intervals (``+2.3 [1.0, 3.5]``) keep their plain form in the file."""
    text = _ENTITY.sub("&amp;", visible(value)).replace("<", "&lt;")
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(), text)


def markdown_fragment(text: str) -> str:
    """A Markdown fragment crop wrote earlier (``fairness/summary.md``) and now includes in
    another file, read back from a directory anyone can edit: control characters visible
    (lines kept) and every ``<`` an entity, which changes nothing in what crop writes (its
    Markdown never holds a raw ``<``) and keeps raw HTML put there by someone else inert."""
    return visible(text, keep_lines=True).replace("<", "&lt;")


def markdown_code(value: Any, *, in_table: bool = False) -> str:
    """``value`` as an inline code span (a path, a command): fenced with one backtick more than
    its longest run of backticks, so nothing in it can close the span; control characters
    visible; ``|`` escaped when the span sits in a table cell (``in_table``), where it would
    end the cell."""
    text = visible(value)
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    span = f"{fence}{pad}{text}{pad}{fence}"
    return span.replace("|", "\\|") if in_table else span


def markdown_fence(body: str, info: str = "") -> list[str]:
    """Lines of a fenced code block holding ``body`` literally: the fence is longer than any run
    of backticks in ``body``, so the body cannot close it (control characters visible, lines kept)."""
    text = visible(body, keep_lines=True)
    fence = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return [fence + info, text, fence]


# ----------------------------------------------------------------------------------------- HTML


def html_text(value: Any, quote: bool = True) -> str:
    """``value`` as HTML text or attribute value: :func:`visible`, then ``html.escape``."""
    return html.escape(visible(value), quote=quote)


# ------------------------------------------------------------------------------------------ CSV

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet cannot run as a formula.

    Numbers (``int``, ``float``, ``bool``) and ``None`` are returned as they are. Text that
    starts with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or a newline gets a leading
    apostrophe (``'=HYPERLINK(...)``), the neutralization spreadsheets themselves use to mark
    text, unless the whole cell is a number written as text (``-1.5``, ``+2``, ``1e-3``) or the
    lone ``-`` that crop writes for "no value". A carriage return inside text becomes a newline: with crop's
    ``\\n`` line ends the csv module quotes a cell holding a newline but not one holding a lone
    CR, which a spreadsheet reads as the end of the row (the rest of the cell would start a new
    row, and could start with ``=``). Other characters are kept (the csv module quotes them)."""
    if not isinstance(value, str):
        return value
    if "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    if value.startswith(_FORMULA_START) and value != "-" and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """:func:`csv_cell` of every value of a row."""
    return [csv_cell(v) for v in values]


# -------------------------------------------------------------------------------------- figures


def _figure_text(text: str) -> str:
    """One string drawn by matplotlib: control characters visible (newlines kept) and every ``$``
    escaped (``\\$``), so no mathtext is parsed; matplotlib draws ``\\$`` as ``$``."""
    return visible(text, keep_lines=True).replace("$", "\\$")


def plain_figure_text(fig: Any) -> Any:
    """Make every text of the matplotlib figure ``fig`` literal; call it once the texts are set
    and before the first layout or draw (``tight_layout``, ``savefig``). Later calls on the same
    figure do nothing. Returns ``fig``.

    Each text (titles, labels, legends, annotations, and the tick labels an axis gets from a
    list of names) goes through :func:`visible` (newlines kept), and each ``$`` is escaped, so
    ``$x^2$`` in a name is drawn as written and an invalid ``$\\frac{$`` cannot fail the figure.
    Numbers that a tick formatter writes at draw time (a symlog axis's ``10^2``) keep their
    mathtext: they never hold data."""
    from matplotlib.axis import Axis
    from matplotlib.text import Text
    from matplotlib.ticker import FixedFormatter, FixedLocator, FuncFormatter

    if getattr(fig, "_crop_plain_text", False):
        return fig
    fig._crop_plain_text = True
    for axis in fig.findobj(Axis):  # tick labels given as names are redrawn from the formatter
        for locator, formatter, setter in (
            (axis.get_major_locator(), axis.get_major_formatter(), axis.set_major_formatter),
            (axis.get_minor_locator(), axis.get_minor_formatter(), axis.set_minor_formatter),
        ):
            if isinstance(formatter, FixedFormatter):
                formatter.seq = [_figure_text(str(label)) for label in formatter.seq]
            elif isinstance(locator, FixedLocator) and isinstance(formatter, FuncFormatter):
                labels = [formatter(loc, pos) for pos, loc in enumerate(locator.locs)]
                setter(FixedFormatter([_figure_text(str(label)) for label in labels]))
    for artist in fig.findobj(Text):
        text = artist.get_text()
        if isinstance(text, str) and text:
            shown = _figure_text(text)
            if shown != text:
                artist.set_text(shown)
    return fig
