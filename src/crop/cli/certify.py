"""``crop certify``: verified, empirical and smoothed robustness of a model file on a person's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from crop.cli._common import (
    _detail,
    _emit_json,
    _guard,
    _json_mode,
    console,
    note_console,
)
from crop.errors import CropError
from crop.outputs import check_out_file
from crop.validate import (
    MAX_SEED,
)


@_guard
def certify(
    model: Annotated[Path, typer.Option(help="model .safetensors written by crop (dense or sparse)")],
    spec: Annotated[
        str,
        typer.Option("--certify", help="what to measure, e.g. 'eps=0.003,0.01,sigma=0.05' (as crop bench --certify)"),
    ] = "eps=0.003,0.01,0.03",
    data: Annotated[
        Path | None, typer.Option(help=".npz with X, y and optional context: every context is certified")
    ] = None,
    user: Annotated[
        int | None, typer.Option(help="or a HAPT user: the available test split and unseen contexts")
    ] = None,
    scenario: Annotated[str, typer.Option(help="with --user: the HAPT scenario")] = "hapt-session:1",
    seed: Annotated[int, typer.Option(help="split seed (with --user) and sampling seed", min=0, max=MAX_SEED)] = 0,
    out: Annotated[str | None, typer.Option(help="write the measures to this JSON file")] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="print one JSON summary on stdout: model, spec, windows and results (fractions)"),
    ] = False,
) -> None:
    """Certify a model: verified accuracy (IBP, CROWN), PGD accuracy, smoothed certified accuracy."""
    import numpy as np

    from crop.certify.robustness import parse_robustness_spec, robustness_measures
    from crop.data.sensing import load_npz
    from crop.models.io import load_model
    from crop.models.utils import n_classes_of
    from crop.report.files import write_text_atomic

    _json_mode(json_out)
    robustness = parse_robustness_spec(spec)
    out_file = check_out_file(out, "--out") if out is not None else None
    if (user is None) == (data is None):
        raise CropError("give either --data (a .npz file) or --user (a HAPT user)")
    if user is not None:
        from crop.data.hapt import USERS
        from crop.data.scenarios import parse_scenarios

        if user not in USERS:
            raise CropError(f"unknown HAPT user {user}: users are 1-30")
        if len(parse_scenarios(scenario)) != 1:
            raise CropError(f"--scenario must name one scenario such as {parse_scenarios(scenario)[0].name}")
    from crop.models.directory import sha256_file

    bind = out_file is not None and model.is_file()  # certify.json records the SHA-256 of this very file
    model_sha256 = sha256_file(model) if bind else None
    net = load_model(model)
    if model_sha256 is not None and sha256_file(model) != model_sha256:
        raise CropError(f"{model} changed while it was being read (another crop run writing it?); try again")
    contexts: dict[str, Any] = {}
    if data is not None:
        whole, context = load_npz(data)
        whole.validate()
        if context is None:
            contexts["all"] = whole
        else:
            ctx = np.asarray([str(v) for v in context.tolist()])
            for v in sorted(set(ctx.tolist())):
                contexts[v] = whole.subset(np.flatnonzero(ctx == v), f"{data.name} context {v}")
    else:
        from crop.data.hapt import USERS
        from crop.data.scenarios import build_user_scenario, parse_scenarios

        if user not in USERS:
            raise CropError(f"unknown HAPT user {user}: users are 1-30")
        scenarios = parse_scenarios(scenario)
        if len(scenarios) != 1:
            raise CropError(f"--scenario must name one scenario such as {scenarios[0].name}")
        us = build_user_scenario(user, scenarios[0], seed)
        contexts[f"available: session {scenarios[0].available_session} (test split)"] = us.available.test
        contexts.update({f"unseen: {k}": v for k, v in us.unseen.items()})
    for name, d in contexts.items():
        d.validate()
        n_classes = n_classes_of(net, d.X, f"{model}: context {name}")
        d.validate(n_classes=n_classes)
    results: dict[str, dict[str, float]] = {}
    import time

    from crop.report.console import TextTable, data_status

    with data_status(note_console, "certifying") as status:
        for name, d in contexts.items():
            status(f"certifying {name} ({len(d)} windows)")
            if d.X.shape[1:] != contexts[next(iter(contexts))].X.shape[1:]:
                raise CropError(f"context {name}: window shape differs")
            t0 = time.perf_counter()
            results[name] = {m["metric"]: m["value"] for m in robustness_measures(net, d.X, d.y, robustness, seed=seed)}
            _detail(f"certified {name} ({len(d)} windows) in {time.perf_counter() - t0:.1f} s")
    rows = [[metric, *(f"{100 * results[c][metric]:.1f}" for c in results)] for metric in next(iter(results.values()))]
    console.print(TextTable(f"robustness of {model.name} (%)", ["measure", *results], rows))
    payload = {
        "model": str(model),
        "model_sha256": model_sha256,  # crop card shows these numbers only beside this very file
        "spec": robustness.to_dict(),
        "windows": {k: len(v) for k, v in contexts.items()},
    }
    if out_file is not None:
        write_text_atomic(out_file, json.dumps({**payload, "results": results}, indent=2))
        console.print(f"wrote {out_file}")
    if json_out:
        _emit_json({"command": "certify", "out": str(out_file) if out_file else None, **payload, "results": results})
