"""Issue 22, packaging and conventions: the documentation that ships in the package
(``crop docs``), help texts printed as written (``crop[ray]``), and shell completion.
The wheel itself is built and installed in tests/test_wheel.py (slow)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

import crop
from crop import manual
from crop.cli import app

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "crop"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def repo_docs() -> dict[str, Path]:
    return {p.stem: p for p in sorted((REPO / "docs").glob("*.md"))}


# ------------------------------------------------------------------ docs shipped with the package


def test_the_package_docs_are_the_repository_docs_not_a_copy():
    # one source of truth: src/crop/docs is a link to docs/, so a wheel's crop/docs/*.md are the
    # files of docs/ at build time and nothing can drift
    link = SRC / "docs"
    assert link.is_symlink() and link.resolve() == (REPO / "docs").resolve()
    assert set(manual.topics()) == set(repo_docs()) and len(repo_docs()) >= 10


def test_crop_docs_lists_every_topic_with_its_title():
    r = run("docs")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    for name, path in repo_docs().items():
        heading = next(line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#"))
        row = next((line for line in lines if line.split(" ", 1)[0] == name), None)
        assert row is not None, f"{name} not listed: {r.output}"
        assert row.endswith(heading.lstrip("#").strip()), row
    assert "crop docs TOPIC" in r.output


def test_crop_docs_topic_prints_the_file_verbatim_in_any_case():
    text = (REPO / "docs" / "DATASETS.md").read_text(encoding="utf-8")
    for spelling in ("DATASETS", "datasets", "DataSets.md"):
        r = run("docs", spelling)
        assert r.exit_code == 0, r.output
        assert r.output == text, spelling


def test_an_unknown_topic_is_one_line_naming_the_topics():
    r = run("docs", "RESULT")  # close, but not a topic
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crop: error: unknown documentation topic 'RESULT'")
    assert lines[0].endswith("topics: " + ", ".join(repo_docs()))


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_help_and_errors_point_to_crop_docs_not_to_a_path_a_wheel_lacks():
    import typer.main

    root = typer.main.get_command(app)
    helps = [root.help or ""] + [
        text or "" for cmd in root.commands.values() for text in [cmd.help, *(p.help for p in cmd.params)]
    ]
    errors: list[str] = []  # the text of every CropError the package raises
    named: set[str] = set()  # every topic the package names (help, errors, notes)
    for path in SRC.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        named |= set(re.findall(r"crop docs ([A-Z]+)\b", source)) - {"TOPIC"}
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "CropError":
                errors += _strings(node)
    assert len(errors) > 300 and sum("crop docs" in h for h in helps) >= 5
    assert [t for t in helps + errors if re.search(r"docs/\w+\.md", t)] == []
    assert named >= {"DATASETS", "ROBUSTNESS", "FAIRNESS"}, named
    assert named <= set(repo_docs()), named - set(repo_docs())


# ------------------------------------------------------------------ help printed as written


def test_extras_in_help_print_literally():
    bench = run("bench", "--help")
    assert bench.exit_code == 0
    assert "crop[ray]" in bench.output and "[method]" in bench.output
    export = run("export", "--help")
    assert "pip install 'crop[onnx]'" in export.output
    assert "crop[onnx]" in run("resources", "--help").output


def test_help_texts_are_left_as_they_were_after_printing():
    # the escaping lasts while help is formatted: the click objects keep their own texts
    import typer.main

    command = typer.main.get_command(app).commands["bench"]
    before = {p.name: p.help for p in command.params}
    assert any("crop[ray]" in (h or "") for h in before.values())
    ctx = command.make_context("bench", ["--help"], resilient_parsing=True)
    command.get_help(ctx)
    assert {p.name: p.help for p in command.params} == before


# ------------------------------------------------------------------ shell completion


def _crop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    code = "import sys; from crop.__main__ import main; sys.argv[0] = 'crop'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full, timeout=120, check=False
    )


def test_tab_completion_answers_commands_and_options():
    out = _crop({"_CROP_COMPLETE": "complete_bash", "COMP_WORDS": "crop per", "COMP_CWORD": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["personalize"]
    out = _crop({"_CROP_COMPLETE": "complete_bash", "COMP_WORDS": "crop bench --exe", "COMP_CWORD": "2"})
    assert out.stdout.split() == ["--executor"]


def test_show_completion_prints_a_script_that_calls_crop_back():
    out = _crop({"_CROP_COMPLETE": "source_bash"})
    assert out.returncode == 0, out.stderr
    assert "_CROP_COMPLETE=complete_bash" in out.stdout and "complete -o default -F _crop_completion crop" in out.stdout
    r = run("--help")
    assert "--install-completion" in r.output and "--show-completion" in r.output


def test_the_version_is_the_package_metadata_version():
    from importlib.metadata import version

    assert crop.__version__ == version("crop")
