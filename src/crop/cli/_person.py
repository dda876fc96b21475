"""Whose data and which generic model: the person of ``crop personalize`` and ``crop tune``
(a HAPT user, a user of a dataset under ``--root``, or an ``.npz`` file plus a model file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crop.errors import CropError


def _hapt_user(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise CropError(f"--user must be a HAPT user id (1-30), got {text!r}") from None


def _preset_config(dataset: str, method: str) -> Any:
    from crop.bench.datasets import method_config

    return method_config(dataset, method)


def _dataset_person(
    dataset: str,
    root: str | None,
    user: str | None,
    scenario: str | None,
    model: Path | None,
    arch: str | None,
    seed: int,
    generic_training: Any,
    options: dict[str, Any] | None = None,
    note: str | None = None,
) -> tuple[Any, dict, Any, dict, dict, str]:
    """As :func:`_person` for ``--dataset NAME --root DIR --user U``: the generic model that
    serves the user (trained on first use and cached), the user's split and unseen contexts
    (``options``: ``--dataset csv``'s ``--rate``, ``--window``, ``--stride`` that were given).
    ``note`` (what the preset costs) is printed once everything is checked, before training."""
    from crop.bench.datasets import DatasetSource
    from crop.data.datasets import dataset_class, get_dataset, uses_given_model

    dataset_class(dataset)
    given = uses_given_model(dataset)
    if user is None:
        raise CropError(f"--dataset {dataset} needs --user (one of its users under --root)")
    if not given and (model is not None or arch is not None):
        raise CropError(
            "--model and --arch apply to --dataset npz and csv (the paper's datasets train their generic models)"
        )
    if options and dataset != "csv":
        raise CropError("--rate, --window and --stride apply to --dataset csv only")
    ds = get_dataset(dataset, root, **(options or {}))
    who = ds.parse_user(user)
    scenarios = ds.parse_scenarios(scenario)
    if scenario is not None and len(scenarios) != 1:
        raise CropError(f"--scenario must name one scenario such as {scenarios[0].name}")
    source = DatasetSource(
        dataset, str(ds.root.resolve()), generic_training, str(model) if model else None, arch, dict(ds.options)
    )
    if given and model is None:
        raise CropError(f"--dataset {dataset} needs --model (your generic model .safetensors)")
    us = source.user_scenario(who, scenarios[0], seed)  # an empty context is refused before any training
    if note is not None:
        from crop.cli._common import _note

        _note(note)  # one line, on stderr
    generic, info = source.generic_model(source.serving(who))
    subject = {"dataset": dataset, "root": source.root, "user": who, "scenario": scenarios[0].name}
    if ds.options:
        subject["dataset_options"] = dict(ds.options)
    return generic, info, us.available, us.unseen, subject, ds.metric


def _person(
    user: int | None,
    scenario: str,
    data: Path | None,
    model: Path | None,
    available: str | None,
    seed: int,
    method: str | None = None,
) -> tuple[Any, dict, Any, dict, dict]:
    """The generic model, its provenance, the available split, the unseen contexts and a
    description of whose data it is: a HAPT user, or a user's own ``.npz`` plus a model file."""
    import numpy as np

    from crop.data.sensing import load_npz, stratified_split
    from crop.models.io import load_model

    if (user is None) == (data is None):
        raise CropError("give either --user (a HAPT user) or --data with --model")
    if user is not None:
        from crop.data.scenarios import build_user_scenario, parse_scenarios
        from crop.generic import generic_for_user, kind_for_method

        scenarios = parse_scenarios(scenario)
        if len(scenarios) != 1:
            raise CropError(f"--scenario must name one scenario such as {scenarios[0].name}")
        from crop.data.hapt import USERS

        if user not in USERS:
            raise CropError(f"unknown HAPT user {user}: users are 1-30")
        generic, generic_info = (
            (load_model(model), {"source": str(model)})
            if model
            else generic_for_user(kind_for_method(scenarios[0].generic, method or ""), user)
        )
        us = build_user_scenario(user, scenarios[0], seed)
        split, unseen = us.available, us.unseen
        subject = {"dataset": "hapt", "user": user, "scenario": scenarios[0].name}
    else:
        if model is None:
            raise CropError("--data needs --model (the generic model file)")
        generic, generic_info = load_model(model), {"source": str(model)}
        whole, context = load_npz(data)
        whole.validate()
        unseen = {}
        if context is not None:
            values = sorted({str(v) for v in context.tolist()})
            if available is None:
                if len(values) > 1:
                    raise CropError(f"{data}: several contexts {values}; choose the available one with --available")
                available = values[0]
            if available not in values:
                raise CropError(f"{data}: context {available!r} not found; contexts are {values}")
            ctx = np.asarray([str(v) for v in context.tolist()])
            for v in values:
                if v != available:
                    unseen[v] = whole.subset(np.flatnonzero(ctx == v), f"{data.name} context {v}")
            whole = whole.subset(np.flatnonzero(ctx == available), f"{data.name} context {available}")
        split = stratified_split(whole, seed)
        subject = {"data": str(data), "available_context": available}
    return generic, generic_info, split, unseen, subject
