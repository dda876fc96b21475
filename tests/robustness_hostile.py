"""Hostile strings for the hardening suite (tests/test_hardening_strings.py), generated and listed.

Issue 25, classes 1 (path traversal), 6 (text read as markup) and the first item of 10
(non-UTF-8 file names). A :class:`HostileCase` puts one hostile string (or, for the collision
cases, a set of strings that differ only in case or punctuation) at one place that crop reads:

* ``report:<field>``: a field of ``results.jsonl`` (scenario, method, context name, user, the
  error of a failed run, the dataset), then ``crop report``;
* ``fairness:<field>``: a field of a ``crop bench --fairness`` directory, or a column name or a
  group of an ``--attributes`` table (CSV or JSON), then ``crop fairness``;
* ``card:<field>``: the name of a model directory under ``crop card DIR --out CARDS``, or a
  string field of its ``summary.json``;
* ``path:<command>``: the name of the directory a command reads or writes (``crop report DIR``,
  ``crop certify --out``, ``crop personalize --out``, ...), including names that are not UTF-8.

Every case must end with exit code 0 (the documented success: the string is kept as data,
shown escaped, and named files follow :mod:`crop.safe_names`) or 2 with one ``crop: error:``
line; the test module checks what each outcome must leave behind.
"""

from __future__ import annotations

from dataclasses import dataclass

# Each class: strings an adversarial user (or an unlucky file) puts where crop expects a name.
HOSTILE: dict[str, list[str]] = {
    "traversal": [
        "/../../../victim/x",
        "../victim/x",
        "../../victim/owned",
        "..",
        ".",
        "a/b",
        "/abs/path/x",
        "a\0b",
        "~/x",
        "..\\..\\victim\\x",
        ".hidden",
        "-rf",
    ],
    "long": ["x" * 300, "\u00e4" * 130, "y" * 65, "s" * 64],
    "markup": ["[bold]x[/bold]", "[/x]", "[link=file:///etc/passwd]y[/link]", ":thumbs_up:", "[red]", "a[/]b"],
    "terminal": [
        "osc52\x1b]52;c;aGFja2Vk\x07",
        "\x1b[2J\x1b[Hclear",
        "title\x1b]0;owned\x1b\\",
        "carriage\rreturn",
        "line\nbreak",
        "csi\x9b31m",
        "bidi\u202eevil",
        "bell\x07",
        "tab\there",
        "sep\u2028line",
    ],
    "mathtext": ["$x^2$", "$\\frac{$", "a$b", "$$", "cost $5 and $6", "$\\undefinedmacro{x}$"],
    "html": [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "[click](javascript:alert(1))",
        "![i](http://example.invalid/x.png)",
        "a|b",
        "**bold**",
        "`code`",
        "&lt;b&gt;",
        "</details><script>x</script>",
    ],
    "formula": [
        '=HYPERLINK("http://example.invalid","x")',
        "+cmd|' /C calc'!A0",
        "-2+3+cmd|' /C calc'!A0",
        "@SUM(A1:A2)",
        "\t=1+1",
        "\r=1+1",
    ],
}
# Undecodable bytes of a file name, as Python carries them (os.fsdecode, surrogateescape).
NON_UTF8 = ["bench\udcff", "\udcc3(name", "\udcff[bold]\udcfe"]
# Sets of names that differ only in case or punctuation: each must get its own file.
COLLISIONS = [
    ("Hand", "hand", "HAND"),
    ("hand", "hand.", "hand-", "hand_", "_hand"),
    ("hapt-session:1", "hapt-session-1", "hapt_session:1", "Hapt-Session:1"),
    ("a b", "a-b", "a_b", "a.b", "a/b", "a\\b"),
]

REPORT_FIELDS = ("scenario", "method", "context_name", "user", "error", "dataset")
FAIRNESS_FIELDS = ("scenario", "method", "column", "group", "json-column")
CARD_FIELDS = ("dir", "method", "scenario", "data")
# Commands whose input or output directory is named by the string (cheap ones for every string).
PATH_COMMANDS = ("report", "fairness", "card", "certify", "export")
# Commands that train or evaluate on HAPT: a few strings each (slow).
SLOW_PATH_COMMANDS = ("personalize", "bench", "analyze")


@dataclass(frozen=True)
class HostileCase:
    cls: str  # traversal, long, markup, terminal, mathtext, html, formula, non-utf8, collision
    target: str  # report:<field>, fairness:<field>, card:<field>, path:<command>
    value: str | tuple[str, ...]

    @property
    def id(self) -> str:
        shown = self.value if isinstance(self.value, str) else "|".join(self.value)
        shown = shown.encode("unicode_escape").decode("ascii")
        return f"{self.target} {self.cls}: {shown[:60]}"


def _component(value: str) -> bool:
    """A string that can name one directory entry (no separator, no NUL, not . or .., at most
    255 bytes)."""
    if not value or value in (".", "..") or "/" in value or "\0" in value:
        return False
    return len(value.encode("utf-8", "surrogateescape")) <= 255


FILE_NAME_CLASSES = ("traversal", "long")  # class 1: strings that become file names
FILE_NAME_FIELDS = ("report:scenario", "fairness:scenario", "fairness:column", "fairness:json-column")


def _turn(items: tuple[str, ...], j: int, n: int) -> list[str]:
    """``n`` of ``items`` for the ``j``-th string of a class: the strings of a class take the
    items in turn, so every item meets every class."""
    return [items[(j * n + i) % len(items)] for i in range(min(n, len(items)))]


def all_cases() -> list[HostileCase]:
    """Every string of every class at the places it matters: a class-1 string wherever crop names
    a file after data (and at a few display places), a class-6 string at the display places in
    turn (three fields of results.jsonl, one of the fairness inputs, two of a model directory,
    two directory names); the non-UTF-8 names and the collision sets at every place they fit."""
    cases: list[HostileCase] = []
    for cls, values in HOSTILE.items():
        for j, value in enumerate(values):
            if cls in FILE_NAME_CLASSES:
                targets = ["report:scenario", *(f"report:{f}" for f in _turn(REPORT_FIELDS[1:], j, 1))]
                targets += _turn(FILE_NAME_FIELDS[1:], j, 2)
                targets += ["card:dir" if _component(value) else "card:data"]
                paths = 3
            else:
                targets = [f"report:{f}" for f in _turn(REPORT_FIELDS, j, 3)]
                targets += [f"fairness:{f}" for f in _turn(FAIRNESS_FIELDS, j, 1)]
                card = CARD_FIELDS if _component(value) else CARD_FIELDS[1:]
                targets += [f"card:{f}" for f in _turn(card, j, 2)]
                paths = 2
            if _component(value):
                targets += [f"path:{c}" for c in _turn(PATH_COMMANDS, j, paths)]
            elif not value.startswith(("/", "~")):  # a path that is no single name: the output path itself
                targets += ["path:certify-raw", "path:report-raw"]
            cases += [HostileCase(cls, t, value) for t in targets]
    slow_sample = ["../victim/x", "[/x]", "osc52\x1b]52;c;aGFja2Vk\x07", "$\\frac{$", "<script>alert(1)</script>"]
    for value in [*slow_sample, "=1+1", NON_UTF8[0]]:
        cls = next((c for c, vs in HOSTILE.items() if value in vs), "non-utf8" if value in NON_UTF8 else "formula")
        cases += [HostileCase(cls, f"path:{c}", value) for c in SLOW_PATH_COMMANDS if _component(value)]
    for value in NON_UTF8:
        cases += [HostileCase("non-utf8", f"path:{c}", value) for c in PATH_COMMANDS]
        cases += [HostileCase("non-utf8", f"report:{f}", value) for f in ("scenario", "method", "context_name")]
        cases += [HostileCase("non-utf8", "card:dir", value), HostileCase("non-utf8", "fairness:scenario", value)]
    for values in COLLISIONS:
        targets = ("report:scenario", "fairness:column", "fairness:scenario", "card:dir")
        cases += [HostileCase("collision", t, values) for t in targets]
    return list(dict.fromkeys(cases))


FAST_ROTATION = ("traversal", "mathtext", "terminal", "non-utf8", "markup", "html", "formula", "long")
FAST_FAIRNESS = ("fairness:scenario", "fairness:group")  # the costly writer: its columns meet the collision set
FAST_COLLISIONS = ("report:scenario", "fairness:column", "card:dir")
FAST_NON_UTF8 = ("report:scenario", "path:report")


def fast_subset(cases: list[HostileCase]) -> list[HostileCase]:
    """A few dozen cases for ``make test``: one per place a string enters (three for the costly
    fairness report), the classes taken in turn, one collision set per writer that names files
    after data; no path case of a command that trains."""
    targets = list(dict.fromkeys(c.target for c in cases if c.cls != "collision"))
    targets = [t for t in targets if not t.startswith("fairness:") or t in FAST_FAIRNESS]
    targets = [t for t in targets if t.removeprefix("path:") not in SLOW_PATH_COMMANDS]
    chosen = []
    for i, target in enumerate(targets):
        of_target = [c for c in cases if c.target == target and c.cls != "collision"]
        wanted = FAST_ROTATION[i % len(FAST_ROTATION)]
        chosen.append(next((c for c in of_target if c.cls == wanted), of_target[0]))
    chosen += [next(c for c in cases if c.cls == "collision" and c.target == t) for t in FAST_COLLISIONS]
    chosen += [c for c in cases if c.cls == "non-utf8" and c.target in FAST_NON_UTF8 and c.value == NON_UTF8[-1]]
    return chosen
