"""The README's Python example runs verbatim from any working directory (it needs no file of the
repository: the generic model ships inside the package)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no Python example under '## Python API'"
    return match.group(1)


def test_the_readme_python_example_runs_from_another_directory(tmp_path):
    code = python_example()
    assert "src/" not in code  # no path into the repository
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CROP_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and "final" in lines[0] and "available" in lines[1], proc.stdout
