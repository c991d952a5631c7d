"""``python -m tapegrad.experiments NAME [--plot OUT.png]`` (same as ``tapegrad experiment``)."""

from __future__ import annotations

import argparse
import sys

from .cli import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m tapegrad.experiments",
        description="Re-run the homework's experiments with tapegrad.",
    )
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
