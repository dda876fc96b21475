"""The terminal side of :mod:`crop.report.escape`: rich consoles, progress bars and spinners that
show data as text.

rich reads ``[bold]`` / ``[/x]`` in a printed string as markup (``[/x]`` with no open tag is an
error) and ``:name:`` as an emoji code, and it passes ESC and the other control characters to
the terminal. Every string crop prints can hold data (a path, a scenario, a method, an error
text), so:

* :class:`DataConsole` prints every string with markup and emoji off and through
  :func:`~crop.report.escape.visible`, so a printed string is one line whatever it holds (a
  newline in a path cannot forge a line of output); crop's own styling and its own multi-line
  text (the help) are given as ``rich.text.Text``;
* :func:`data_progress` builds progress bars whose description column is plain text
  (:class:`DataDescription`), whatever the task description holds;
* :func:`data_status` is a spinner whose text (and every update) is plain text;
* :class:`TextTable` is a table that a terminal shows as a rich box table and a pipe or a file
  gets whole, as plain Markdown text (no cell cut to the 80 columns rich assumes off a terminal);
* :class:`LineProgress` stands in for a progress bar off a terminal: one line per finished unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskProgressColumn, TimeRemainingColumn
from rich.text import Text

from crop.report.escape import visible


class DataConsole(Console):
    """A rich ``Console`` for which every printed string is data: markup and emoji codes off
    (always, whatever a caller passes), control characters (newlines too) visible. Styled or
    multi-line output is given as ``rich.text.Text``."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("emoji", False)
        super().__init__(**kwargs)

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """``Console.print``; off a terminal (a pipe, a file) nothing is wrapped or cut at the
        80 columns rich assumes there. A :class:`TextTable` is drawn for this console (a box
        table on a terminal, else whole Markdown text)."""
        if not self.is_terminal:
            kwargs["soft_wrap"] = True
        if any(isinstance(o, TextTable) for o in objects):
            objects = tuple(o.for_console(self) if isinstance(o, TextTable) else o for o in objects)
        super().print(*objects, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:  # type: ignore[override]
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(visible(text), **kwargs)


def plain(text: Any, style: str = "") -> Text:
    """``text`` as a rich ``Text`` shown literally (control characters visible)."""
    return Text(visible(text), style=style)


class DataDescription(ProgressColumn):
    """A progress bar's description column that shows ``task.description`` as plain text."""

    def __init__(self, style: str = "progress.description") -> None:
        super().__init__()
        self.style = style

    def render(self, task: Task) -> Text:
        return Text(visible(task.description), style=self.style)


def data_progress(*columns: Any, **kwargs: Any) -> Progress:
    """A rich ``Progress`` with plain-text descriptions: ``columns`` (default: description, bar,
    percentage, time remaining, as rich's own default) and the keyword arguments of ``Progress``."""
    if not columns:
        columns = (DataDescription(), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    return Progress(*columns, **kwargs)


@contextmanager
def data_status(console: Console, text: Any) -> Iterator[Callable[[Any], None]]:
    """``console.status`` with ``text`` shown literally; yields the function that updates it
    (again literally)."""
    with console.status(plain(text)) as status:
        yield lambda new: status.update(plain(new))


class TextTable:
    """A table of text cells (shown literally) for :class:`DataConsole`: on a terminal a rich
    box table; in a pipe or a file plain Markdown, every cell whole (``|`` in a cell escaped),
    so that a log keeps every number and a script can read the rows."""

    def __init__(self, title: Any, header: list[Any], rows: list[list[Any]], note: Any = "") -> None:
        self.title = visible(title)
        self.header = [visible(h) for h in header]
        self.rows = [[visible(c) for c in row] for row in rows]
        self.note = visible(note) if note else ""

    def rich(self) -> Any:
        from rich.table import Table as RichTable

        rt = RichTable(title=self.title or None, title_justify="left", show_lines=False)
        for i, h in enumerate(self.header):
            rt.add_column(h, justify="left" if i == 0 else "right")
        for row in self.rows:
            rt.add_row(*row)
        return rt

    def text(self) -> str:
        """The table as Markdown text: the title, the header, a rule, one line per row."""

        def line(cells: list[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        lines = [self.title, ""] if self.title else []
        lines += [line(self.header), "|" + "|".join("---" for _ in self.header) + "|"]
        lines += [line(row) for row in self.rows]
        return "\n".join(lines) + "\n"

    def for_console(self, console: Console) -> Any:
        if console.is_terminal:
            return self.rich()
        return Text(self.text(), no_wrap=True, overflow="ignore")


class LineProgress:
    """The part of rich's ``Progress`` that crop uses (``add_task``, ``update``, ``advance``, a
    context manager), for a stream that is not a terminal: nothing is redrawn; :meth:`line`
    prints one line per finished unit, ``[done/total] what: how``, on ``console``."""

    def __init__(self, console: Console, disable: bool = False) -> None:
        self.console = console
        self.disable = disable
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        key = len(self._tasks)
        self._tasks[key] = {"description": description, "total": total, "completed": completed}
        return key

    def update(self, task: int | None, description: str | None = None, **_: Any) -> None:
        if task is not None and description is not None:
            self._tasks[task]["description"] = description

    def advance(self, task: int | None, advance: float = 1) -> None:
        if task is not None:
            self._tasks[task]["completed"] += advance

    def line(self, task: int, text: str) -> None:
        """``[completed/total] text`` on the console (unless disabled)."""
        if self.disable:
            return
        t = self._tasks[task]
        total = "?" if t["total"] is None else f"{t['total']:g}"
        self.console.print(f"[{t['completed']:g}/{total}] {text}", highlight=False, markup=False, soft_wrap=True)
