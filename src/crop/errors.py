"""User-facing errors.

Every problem caused by the caller's input (bad shapes, NaN values, an unknown user, a corrupt
model file, ...) raises :class:`CropError`. The command-line interface turns it into a one-line
message on stderr and exit code 2, without a traceback. A damaged line of a results file is not
fatal: it is skipped with a :class:`ResultsWarning` (one line ``crop: warning: ...``). Files of
a dataset that cannot be read, and users left without usable samples, are reported with a
:class:`DataWarning` each time the dataset is loaded.
"""

from __future__ import annotations


class CropError(ValueError):
    """A problem with the caller's input, explained in one line."""


class ResultsWarning(UserWarning):
    """A line of ``results.jsonl`` was skipped (it names the line and why)."""


class CacheWarning(UserWarning):
    """A cached generic model could not be used as it is (no or another recorded provenance, or
    unreadable) and is trained again (it names the file and why)."""


class DataWarning(UserWarning):
    """Something under a dataset's ``--root`` was left out: unreadable files skipped (counted,
    the first named) or users without usable samples (listed, with why)."""
