"""``python -m convexsnn``: the ``convexsnn`` command line (:func:`convexsnn.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
