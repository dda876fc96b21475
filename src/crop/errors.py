"""User-facing errors.

Every problem caused by the caller's input (bad shapes, NaN values, an unknown user, a corrupt
model file, ...) raises :class:`CropError`. The command-line interface turns it into a one-line
message on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations


class CropError(ValueError):
    """A problem with the caller's input, explained in one line."""
