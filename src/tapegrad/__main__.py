"""``python -m tapegrad ...``: the same command line as the ``tapegrad`` script."""

import sys

from .cli import main

# guarded: a spawned worker process (DataLoader workers, multiprocessing's "spawn") imports
# this module again as ``__mp_main__`` and must not start a second command line
if __name__ == "__main__":
    sys.exit(main())
