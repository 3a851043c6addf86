"""``python -m phalanb.cli``: the same as the ``phalanb`` command."""

import sys

from . import main

sys.exit(main())
