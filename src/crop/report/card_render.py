"""A report card as one self-contained HTML page and as its Markdown twin.

The page opens offline and without JavaScript: styles are inline in one ``<style>`` element
with system fonts only, figures are ``data:image/png;base64`` URIs, the configuration sits in a
``<details>`` element (folds without scripts), and no element references anything outside the
file. Every piece of text from the input files is HTML-escaped. The Markdown twin has the same
sections, text and tables; its figures are only named (Markdown viewers do not show ``data:``
images reliably), so the page is the one to read.

Written by hand rather than with a template engine: the page is seven sections of headings,
paragraphs and tables, and escaping in one place is simpler to audit than a template's rules.

Card text is plain text with two kinds of span, `code` and **bold**; everything else in it,
and all of a span's content, is data: escaped for HTML by :func:`_inline` and for Markdown by
:func:`_md_inline` (the rules of :mod:`crop.report.escape`).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable, Sequence

from crop.report.card import Card, Section, TableBlock
from crop.report.escape import html_text, markdown_code, markdown_fence, markdown_text, visible

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_SPANS = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.verdict { padding: .6rem .9rem; border-radius: 4px; background: #eef5ee; border-left: 5px solid #3a7d44; }
.verdict.harm { background: #fbeeee; border-left-color: #c0392b; }
.verdict.none { background: #f3f3f3; border-left-color: #999; }
.missing { color: #7a5a00; background: #fff8e1; padding: .4rem .7rem; border-radius: 4px; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } caption { caption-side: top; text-align: left; font-style: italic; padding: .2rem 0; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
code { background: #f4f4f4; padding: 0 .2rem; word-break: break-all; }
pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; }
figure { margin: .8rem 0; } figure img { max-width: 100%; } figcaption { font-size: .85rem; color: #555; }
footer { margin-top: 2rem; font-size: .8rem; color: #777; }
"""


def _inline(text: str) -> str:
    """Escape ``text``, then turn `code` and **bold** spans into elements."""
    out = html_text(text)
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


def html_table(
    caption: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    cell: Callable[[str], str] = _inline,
    cell_class: Callable[[str], str | None] | None = None,
) -> str:
    """A ``<table>``: ``cell`` turns each caption, header and cell text into HTML (default
    :func:`_inline`: escaped, `code` and **bold** spans); ``cell_class`` may name a class for a
    body cell (``None``: none)."""
    parts = ["<table>"]
    if caption:
        parts.append(f"<caption>{cell(caption)}</caption>")
    if any(h for h in header):
        parts.append("<tr>" + "".join(f"<th>{cell(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        tds = []
        for c in row:
            name = cell_class(c) if cell_class is not None else None
            tds.append(f'<td class="{html_text(name)}">{cell(c)}</td>' if name else f"<td>{cell(c)}</td>")
        parts.append("<tr>" + "".join(tds) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _html_table(t: TableBlock) -> str:
    return html_table(t.caption, t.header, t.rows)


def figure_html(png: bytes, caption: str, caption_html: str | None = None) -> str:
    """A ``<figure>`` with ``png`` embedded as a ``data:`` URI; ``caption`` is the alt text
    (escaped) and, unless ``caption_html`` is given, the caption (:func:`_inline`)."""
    data = base64.b64encode(png).decode("ascii")
    shown = _inline(caption) if caption_html is None else caption_html
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html_text(caption)}">'
        f"<figcaption>{shown}</figcaption></figure>"
    )


def section_html(key: str, title: str, parts: Sequence[str]) -> str:
    """A ``<section>`` with the anchor ``key``, an ``<h2>`` heading and the HTML ``parts``."""
    return "\n".join([f'<section id="{html_text(key)}">', f"<h2>{html_text(title)}</h2>", *parts, "</section>"])


def document(title: str, body: str, style: str = STYLE) -> str:
    """A whole page: ``title`` (escaped) in ``<title>`` and ``<h1>``, then ``body`` (HTML);
    styles inline, no script, nothing loaded from outside the file."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html_text(title)}</title>\n<style>{style}</style>\n</head>\n<body>\n"
        f"<h1>{html_text(title)}</h1>\n"
        f"{body}"
        "</body>\n</html>\n"
    )


def _html_section(s: Section) -> str:
    parts = []
    if s.missing:
        parts.append(f'<p class="missing">{_inline(s.missing)}</p>')
    parts += [f"<p>{_inline(p)}</p>" for p in s.text]
    parts += [_html_table(t) for t in s.tables]
    parts += [figure_html(f.png, f.caption) for f in s.figures]
    for summary, body in s.details:
        body_html = html.escape(visible(body, keep_lines=True))
        parts.append(f"<details><summary>{_inline(summary)}</summary><pre>{body_html}</pre></details>")
    return section_html(s.key, s.title, parts)


def _verdict_class(verdict: str) -> str:
    return "verdict harm" if verdict.startswith("HARM") else "verdict none" if verdict.startswith("not") else "verdict"


def render_html(card: Card) -> str:
    body = "\n".join(_html_section(s) for s in card.sections)
    return document(
        card.title,
        f'<p class="{_verdict_class(card.verdict)}">Do-no-harm: {_inline(card.verdict)}</p>\n'
        f"{body}\n"
        "<footer>Written by <code>crop card</code> from the files of the model directory and, where given, "
        "an all-user bench. Every number comes from those files.</footer>\n",
    )


def _md_inline(text: str, in_table: bool = False) -> str:
    """Card text as Markdown: `code` spans stay code spans (their content literal), **bold**
    spans stay bold (their content escaped), everything else is escaped (:func:`markdown_text`)."""
    out, last = [], 0
    for m in _SPANS.finditer(text):
        out.append(markdown_text(text[last : m.start()]))
        if m.group(1) is not None:
            out.append(markdown_code(m.group(1), in_table=in_table))
        else:
            out.append(f"**{markdown_text(m.group(2))}**")
        last = m.end()
    out.append(markdown_text(text[last:]))
    return "".join(out)


def _md_table(t: TableBlock) -> list[str]:
    lines = [f"*{_md_inline(t.caption)}*", ""] if t.caption else []
    header = t.header if any(h for h in t.header) else ["item", "value"]
    lines.append("| " + " | ".join(_md_inline(h, in_table=True) for h in header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(_md_inline(c, in_table=True) for c in row) + " |" for row in t.rows]
    return [*lines, ""]


def render_markdown(card: Card) -> str:
    lines = [f"# {markdown_text(card.title)}", "", f"**Do-no-harm:** {_md_inline(card.verdict)}", ""]
    for s in card.sections:
        lines += [f"## {markdown_text(s.title)}", ""]
        if s.missing:
            lines += [f"> {_md_inline(s.missing)}", ""]
        for p in s.text:
            lines += [_md_inline(p), ""]
        for t in s.tables:
            lines += _md_table(t)
        for f in s.figures:
            lines += [f"Figure (in the HTML card): {_md_inline(f.caption)}", ""]
        for summary, body in s.details:
            # an HTML block: its summary is HTML text; the body is a fence it cannot close
            lines += [f"<details><summary>{html_text(summary)}</summary>", "", *markdown_fence(body, "json"), ""]
            lines += ["</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
