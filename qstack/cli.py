"""The ``qstack`` command."""
from __future__ import annotations

import argparse
import sys

from qstack._version import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qstack",
        description="qstack: a layered quantum network stack (simulate and emulate "
                    "quantum-internet protocols from photons to applications).",
    )
    parser.add_argument("--version", action="version", version=f"qstack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the demo network and print its metrics")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from qstack.demo import main as demo_main
        return demo_main(["--seed", str(args.seed)])
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
