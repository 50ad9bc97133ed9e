"""Command line: ``python -m dense_xp info`` and ``python -m dense_xp demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._info import backend_info, format_info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dense_xp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="report each array backend, its version and devices")
    args = parser.parse_args(argv)
    if args.command == "info":
        print(format_info(backend_info()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
