"""``crop card``: one report card (self-contained HTML page + Markdown twin) per personalized model."""

from __future__ import annotations

from typing import Annotated

import typer

from crop.cli._common import _guard, console
from crop.outputs import check_input_dir, check_out_dir


@_guard
def card(
    directory: Annotated[
        str,
        typer.Argument(
            help="a crop personalize --out directory, or a folder holding several (searched 3 levels down)",
            show_default=False,
        ),
    ],
    bench: Annotated[
        str | None,
        typer.Option(help="an all-user crop bench directory: population evidence, robustness and fairness records"),
    ] = None,
    out: Annotated[
        str | None, typer.Option(help="write the cards here (default: card.html and card.md in each model directory)")
    ] = None,
) -> None:
    """Write the report card of every personalized model in DIRECTORY: who and what, accuracy,
    population evidence, robustness, sparsity and size, fairness, and the do-no-harm verdict.
    The HTML page opens offline (figures embedded, no scripts); card.md is its Markdown twin."""
    from crop.report.card import write_cards

    root = check_input_dir(directory, "DIRECTORY")
    bench_dir = check_input_dir(bench, "--bench") if bench is not None else None
    out_dir = check_out_dir(out, "--out") if out is not None else None
    written = write_cards(root, bench=bench_dir, out=out_dir)
    for path in written:
        console.print(f"wrote {path} and {path.with_suffix('.md')}")
