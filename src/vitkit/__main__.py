"""``python -m vitkit …``: the ``vitkit`` command (same as ``python -m vitkit.cli``)."""
import sys

from .cli import main

sys.exit(main())
