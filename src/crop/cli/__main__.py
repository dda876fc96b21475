"""``python -m crop.cli``: the ``crop`` command."""

from crop.cli import main

main()
