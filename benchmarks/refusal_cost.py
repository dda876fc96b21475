"""Wall time and extra memory of each oversized-input refusal (Hardening II, class 7).

The measurement lives in the robustness suite
(``tests/test_hardening_inputs.py::test_no_command_spends_2_s_or_500_mb_before_refusing_an_oversized_input``),
which builds the hostile files (a 1.7 MB ``.npz`` that inflates to 1.7 GB, deep and long TOML
configs, huge shapes, a model with 1e30 weights), runs each command twice in a fresh process
and asserts the memory bound. This script runs that test and prints its table: one line per
refusal with the wall time and the resident memory added over the process's size before the
command (second run; the first, which also imports the command's modules, in brackets).

    .venv/bin/python benchmarks/refusal_cost.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TEST = "tests/test_hardening_inputs.py::test_no_command_spends_2_s_or_500_mb_before_refusing_an_oversized_input"


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    lines = [line for line in proc.stdout.splitlines() if " s, +" in line]
    print("\n".join(lines) if lines else proc.stdout[-3000:])
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
