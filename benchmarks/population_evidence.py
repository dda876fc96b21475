"""Write the population evidence crop ships for HAPT (``src/crop/evidence/hapt.json``) from an
all-user bench directory: per person, the available- and unseen-context accuracy of the generic
model and of every method, seeds averaged (``crop.report.expect.write_evidence``).

``crop personalize`` and ``crop card`` read it to tell a person what people like them can expect
where nobody recorded; they leave that person out of it.

Usage:
    .venv/bin/python benchmarks/population_evidence.py BENCH_DIR [OUT]
"""

from __future__ import annotations

import sys
from pathlib import Path

from crop.bench.runner import load_results
from crop.report.expect import shipped_evidence, write_evidence


def main() -> None:
    bench = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else shipped_evidence("hapt")
    records = load_results(bench)
    command = (bench / "command.txt").read_text().strip() if (bench / "command.txt").is_file() else ""
    source = command or f"crop bench --users all ... --out {bench.name} (docs/RESULTS.md)"
    path = write_evidence(records, out, dataset="hapt", metric="balanced_accuracy", source=source)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
