"""``python -m tapegrad ...``: the same command line as the ``tapegrad`` script."""

import sys

from .cli import main

sys.exit(main())
