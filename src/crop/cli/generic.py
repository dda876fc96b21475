"""``crop methods`` (the registered methods), ``crop train-generic`` (a HAPT generic model) and
``crop docs`` (the documentation shipped with the package)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from crop.cli._common import (
    _guard,
    console,
    note_console,
)
from crop.errors import CropError
from crop.outputs import check_out_file
from crop.validate import (
    MAX_EPOCHS,
    MAX_SEED,
)


@_guard
def methods() -> None:
    """List the registered personalization methods."""
    from rich.text import Text

    from crop.personalization.registry import METHODS, available_methods

    for name in available_methods():
        console.print(Text.assemble((name, "bold"), f": {METHODS[name].description}"))


@_guard
def train_generic_cmd(
    out: Annotated[str, typer.Option(help="output .safetensors file")],
    kind: Annotated[
        str, typer.Option(help="hapt, hapt-rot (rotation augmentation), hapt-nobn, hapt-rot-nobn")
    ] = "hapt",
    epochs: Annotated[int, typer.Option(help="training epochs", min=1, max=MAX_EPOCHS)] = 30,
    seed: Annotated[int, typer.Option(help="training seed", min=0, max=MAX_SEED)] = 0,
) -> None:
    """Train a HAPT generic model (deterministic) leaving the personalization users out.

    The shipped weights were produced by
    ``crop train-generic --kind hapt --out src/crop/models/weights/hapt-generic.safetensors`` and
    ``crop train-generic --kind hapt-rot --out src/crop/models/weights/hapt-rot-generic.safetensors``.
    """
    from crop.generic import GENERIC_KINDS, GenericTrainConfig, train_generic
    from crop.models.io import save_model
    from crop.validate import check_config

    target = check_out_file(out, "--out")
    if kind not in GENERIC_KINDS:
        raise CropError(f"unknown generic model kind {kind!r}; choose {', '.join(GENERIC_KINDS)}")
    config = check_config(GenericTrainConfig(epochs=epochs, seed=seed), "train-generic")
    from crop.report.console import data_status

    with data_status(note_console, f"training the {kind} generic model ({epochs} epochs)"):
        model, info = train_generic(kind, config=config)
    save_model(model, target, {k: v for k, v in info.items()})
    console.print(
        f"validation balanced accuracy (users {info['val_users']}): {100 * info['val_balanced_accuracy']:.2f} % "
        f"at epoch {info['best_epoch']}; wrote {target}"
    )


@_guard
def faults() -> None:
    """List the fault library: each fault, its severity unit and its sweep grid (crop bench --faults)."""
    from crop.data.faults import FAULTS
    from crop.report.console import TextTable

    rows = [[f.name, f.unit, ", ".join(f"{s:g}" for s in f.sweep), f.touches] for f in FAULTS.values()]
    console.print(TextTable("sensor faults (crop.data.faults)", ["fault", "severity", "sweep", "sensor"], rows))


@_guard
def docs(
    topic: Annotated[
        str | None,
        typer.Argument(
            help="a topic, e.g. DATASETS (any case); none: list the topics", metavar="TOPIC", show_default=False
        ),
    ] = None,
) -> None:
    """Print crop's documentation: the topics, or one topic's text (Markdown).

    The repository's docs/*.md, shipped in the package; help and error texts name them so: crop docs DATASETS."""
    from crop import manual

    if topic is None:
        known = manual.topics()
        if not known:
            raise CropError("this installation of crop has no documentation files (crop/docs/*.md)")
        width = max(len(name) for name in known)
        lines = [f"{name:<{width}}  {manual.title(entry)}".rstrip() for name, entry in known.items()]
        text = "\n".join([*lines, "", "crop docs TOPIC prints one (Markdown); e.g. crop docs DATASETS | less"]) + "\n"
    else:
        text = manual.read(topic)
        text += "" if text.endswith("\n") else "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # crop docs RESULTS | head: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when the interpreter flushes at exit
        os.close(devnull)
