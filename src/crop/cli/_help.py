"""Help text printed as written.

typer renders help with rich markup, where ``[...]`` is a style tag: ``pip install 'crop[ray]'``
would print as ``pip install 'crop'``. The command classes here escape every help text of the
command being shown (its own, its options' and arguments', and its subcommands' summaries) for
the time it is formatted, so brackets print literally and nothing else changes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer.core
from rich.markup import escape


def _texts(command: Any, ctx: Any) -> Iterator[tuple[Any, str]]:
    """The (object, attribute) pairs holding text that typer parses as markup."""
    for attr in ("help", "short_help", "epilog"):
        yield command, attr
    for param in command.get_params(ctx):
        yield param, "help"
    for sub in getattr(command, "commands", {}).values():
        yield sub, "help"
        yield sub, "short_help"


@contextmanager
def _escaped(command: Any, ctx: Any) -> Iterator[None]:
    saved: list[tuple[Any, str, str]] = []
    try:
        if getattr(command, "rich_markup_mode", None) == "rich":
            for obj, attr in _texts(command, ctx):
                value = getattr(obj, attr, None)
                if isinstance(value, str):
                    saved.append((obj, attr, value))
                    setattr(obj, attr, escape(value))
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


class LiteralHelpGroup(typer.core.TyperGroup):
    """The ``crop`` group: ``crop --help`` lists the commands with their summaries as written."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _escaped(self, ctx):
            super().format_help(ctx, formatter)


class LiteralHelpCommand(typer.core.TyperCommand):
    """A ``crop`` command whose ``--help`` prints its texts as written."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _escaped(self, ctx):
            super().format_help(ctx, formatter)
