"""The ``crop`` command's entry point (the console script, and ``python -m crop``).

It installs the command's handling of Ctrl-C and SIGTERM (:mod:`crop.interrupts`) before
anything heavy is imported, so a stop during the first seconds (typer, rich, torch) ends with
one line and exit code 130 / 143, never a traceback. Until then it imports only the standard
library (``import crop`` imports nothing heavy).
"""

from __future__ import annotations


def main() -> None:
    """Run the ``crop`` command."""
    from crop import interrupts

    interrupts.install()  # start-up: a stop prints its line and exits at once
    from crop.cli import main as command

    command()  # switches to unwinding (crop.interrupts.unwind) before the command writes anything


if __name__ == "__main__":
    main()
