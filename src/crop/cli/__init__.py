"""crop: trustworthy static personalization of human-sensing models (CRoP).

Personalize (personalize, tune), compare (bench, report, demo), explain (analyze), certify (certify),
audit fairness (fairness), report (card), deploy (export, resources), read the documentation (docs).

Bad input ends in one line on stderr ("crop: error: ...") and exit code 2, with no half-written output.

Results (tables, summaries, --json) go to stdout; progress and notes to stderr (crop --quiet: none;
crop --verbose: phase timings). Off a terminal, tables are printed whole as Markdown text and
crop bench prints one line per finished unit.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from typing import Annotated, Any

from crop._heap import freeze_imports, paused_collector

with paused_collector():  # crop._heap: the imports without the collector's fruitless passes
    # What every command runs on (``import crop`` itself is lazy): imported here, with the
    # collector paused, so that the command's freeze_imports() puts them out of its reach.
    import torch  # noqa: F401
    import typer

    import crop.api  # noqa: F401
    import crop.models.io  # noqa: F401
    import crop.personalization  # noqa: F401
    from crop.cli import bench, card, certify, deploy, generic, personalize, report
    from crop.cli._common import _guard, _say, _set_output, console
    from crop.cli._help import LiteralHelpCommand, LiteralHelpGroup
    from crop.validate import MAX_THREADS

# The commands live in one module per family (bench, report, personalize, certify, card, generic, deploy); this
# module holds the app, the global --threads option and the in-process runner. Commands are
# registered here, in the order `crop --help` lists them.
app = typer.Typer(
    cls=LiteralHelpGroup,  # crop.cli._help: brackets in help texts print literally (pip install 'crop[ray]')
    rich_markup_mode="rich",
    add_completion=True,  # --install-completion, --show-completion (typer; the shell detected by shellingham)
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help=__doc__,
)


def _show_version(value: bool) -> None:
    if value:
        import platform

        import crop

        print(f"crop {crop.__version__} (torch {torch.__version__}, Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
@_guard
def _setup(
    version: Annotated[
        bool,
        typer.Option("--version", help="print crop's version and exit", is_eager=True, callback=_show_version),
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            help="CPU threads for torch (default: $CROP_THREADS, else 1: the bits of crop bench's one-thread workers; more threads gain little on the small sensing models)",
            min=1,
            max=MAX_THREADS,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="no progress or notes on stderr (errors and warnings still print; results on stdout)"
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="more detail on stderr, e.g. the time of each phase")
    ] = False,
) -> None:
    """crop: trustworthy static personalization of human-sensing models (CRoP)."""
    from crop.env import check_all

    _set_output(quiet=quiet, verbose=verbose)

    from_env = check_all()  # CROP_THREADS, CROP_CACHE_DIR, CROP_HAPT_FILE: refused like bad options
    import torch

    torch.set_num_threads(threads or from_env)


app.command(cls=LiteralHelpCommand)(generic.methods)
app.command(cls=LiteralHelpCommand)(bench.bench)
app.command(cls=LiteralHelpCommand)(report.report)
app.command(cls=LiteralHelpCommand)(report.fairness)
app.command(cls=LiteralHelpCommand)(report.analyze)
app.command(cls=LiteralHelpCommand)(bench.demo)
app.command(cls=LiteralHelpCommand)(personalize.personalize)
app.command(cls=LiteralHelpCommand)(personalize.tune)
app.command(cls=LiteralHelpCommand)(certify.certify)
app.command(cls=LiteralHelpCommand)(card.card)
app.command("train-generic", cls=LiteralHelpCommand)(generic.train_generic_cmd)
app.command(cls=LiteralHelpCommand)(generic.faults)
app.command(cls=LiteralHelpCommand)(deploy.export)
app.command(cls=LiteralHelpCommand)(deploy.predict)
app.command(cls=LiteralHelpCommand)(deploy.resources)
app.command(cls=LiteralHelpCommand)(generic.docs)


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``crop`` with ``argv`` (default: ``sys.argv[1:]``) in this process; return the exit code.

    A usage error (unknown option, ``--seed 1.5``, a missing value...) is one line
    ``crop: error: ...`` on stderr with exit code 2, like every refused input; warnings are one
    line ``crop: warning: ...`` each."""
    from typer._click.exceptions import NoArgsIsHelpError

    from crop.cli._common import STOPS_REPORTED
    from crop.errors import CacheWarning, DataWarning, ResultsWarning
    from crop.interrupts import INTERRUPTED, stop_line

    shown: set[str] = set()
    reported = len(STOPS_REPORTED)
    _set_output()  # the modes of an earlier command in this process do not carry over

    def show_warning(message: Any, *args: Any, **kwargs: Any) -> None:
        if str(message) not in shown:  # each distinct warning once per command
            shown.add(str(message))
            _say("crop: warning: ", message)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ResultsWarning)
        warnings.simplefilter("always", CacheWarning)
        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = show_warning
        try:
            code = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="crop", standalone_mode=False)
        except NoArgsIsHelpError as exc:
            from rich.text import Text

            console.print(Text(exc.format_message()), highlight=False)  # the help: crop's own text
            return 0
        except typer.TyperException as exc:  # click's UsageError, BadParameter, NoSuchOption...
            ctx = getattr(exc, "ctx", None)
            command = ctx.command_path.removeprefix("crop").strip() if ctx is not None else ""
            _say("crop: error: ", f"{command + ': ' if command else ''}{exc.format_message()} (see --help)")
            return 2
        except typer.Abort:
            _say("crop: ", "aborted")
            return 1
        except BaseException as exc:  # Ctrl-C / SIGTERM outside a command (typer building the commands)
            stop = stop_line(exc)
            if stop is None:
                raise
            _say("", stop[0])
            return stop[1]
    code = code if isinstance(code, int) else 0
    if code == INTERRUPTED and len(STOPS_REPORTED) == reported:  # typer turned Ctrl-C into exit 130, silently
        _say("", "crop: interrupted")
    return code


def main() -> None:
    """Run the ``crop`` command in this process (the console script enters through
    :mod:`crop.__main__`, which installs the signal handling before this module's imports)."""
    from crop import interrupts

    interrupts.install()  # Ctrl-C: crop: interrupted, 130; SIGTERM: crop: terminated, 143
    freeze_imports()  # the process is the command's: later collections skip the imported modules
    interrupts.unwind()  # from here a stop unwinds, so that nothing is left half-written
    code = run()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    interrupts.finished(code)  # a stop during the interpreter's clean-up: exit at once with this code
    sys.exit(code)
