"""``python -m vitkit.cli …`` (and ``torchrun … -m vitkit.cli train …``): the ``vitkit`` command."""
import sys

from . import main

sys.exit(main())
