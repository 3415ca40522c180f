"""``python -m invdiff.cli``: the same as the ``invdiff`` command."""

import sys

from invdiff.cli import main

sys.exit(main())
