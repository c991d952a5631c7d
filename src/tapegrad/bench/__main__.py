"""``python -m tapegrad.bench [options]``: the same as ``python -m tapegrad bench``."""

import sys

from .cli import build_parser, main

if __name__ == "__main__":
    sys.exit(main(build_parser().parse_args()))
