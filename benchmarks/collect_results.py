"""Copy bench outputs into docs/: tables as Markdown and the Δ bar chart per scenario family.

Usage: .venv/bin/python benchmarks/collect_results.py NAME=DIR [NAME=DIR ...]
writes docs/results/NAME.md (every table of DIR/results.jsonl, with the command that made it)
and docs/figures/NAME-deltas.png.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from crop.bench.runner import load_results
from crop.report.plots import delta_bars
from crop.report.tables import performance, render_markdown

DOCS = Path(__file__).resolve().parents[1] / "docs"


def command_of(out: Path, records: list[dict]) -> str:
    settings = json.loads((out / "bench.json").read_text())
    families = sorted({r["scenario"].split(":")[0] for r in records})
    seeds = ",".join(str(s) for s in sorted({r["seed"] for r in records}))
    methods = ",".join(settings["configs"])
    tune = (
        " --tune" + (f" --tune-budget {settings['tune_budget']}" if settings.get("tune_budget") else "")
        if settings.get("tune")
        else ""
    )
    certify = ""
    if settings.get("certify"):
        from crop.certify.robustness import RobustnessSpec

        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in settings["certify"].items()}
        certify = f" --certify {RobustnessSpec(**fields).to_option()}"
    return (
        f"crop bench --dataset hapt --scenario {','.join(families)} --seeds {seeds} "
        f"--methods {methods}{tune}{certify} --out out/{out.name}"
    )


def main() -> None:
    for arg in sys.argv[1:]:
        name, _, directory = arg.partition("=")
        out = Path(directory)
        records = load_results(out)
        text = render_markdown(records)
        body = text.split("\n", 1)[1]
        page = [
            f"# {name}",
            "",
            "Produced by:",
            "",
            "```bash",
            command_of(out, records),
            "```",
            "",
            f"![Δ_P and Δ_G](../figures/{name}-deltas.png)",
            body,
        ]
        (DOCS / "results").mkdir(parents=True, exist_ok=True)
        (DOCS / "results" / f"{name}.md").write_text("\n".join(page))
        (DOCS / "figures").mkdir(parents=True, exist_ok=True)
        delta_bars(
            performance(records), DOCS / "figures" / f"{name}-deltas.png", f"{name}: Δ_P and Δ_G (balanced accuracy)"
        )
        if (out / "timings.jsonl").is_file():
            shutil.copy(out / "timings.jsonl", DOCS / "results" / f"{name}-timings.jsonl")
        print(f"wrote docs/results/{name}.md")


if __name__ == "__main__":
    main()
