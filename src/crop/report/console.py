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
* :func:`data_status` is a spinner whose text (and every update) is plain text.
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
