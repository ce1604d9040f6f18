"""``python -m convexsnn.cli``: the ``convexsnn`` command line."""

import sys

from . import main

sys.exit(main())
