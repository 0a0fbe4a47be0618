"""``python -m thinslice.cli``: the same as the ``thinslice`` command."""

import sys

from thinslice.cli import main

sys.exit(main())
