"""``python -m aiops.cli``: the same as the ``aiops`` console script."""

from aiops.cli import main

main()
