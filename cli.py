"""The ``jobvisor`` command: parses arguments and calls the embedded API, nothing more."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("jobvisor")
    except PackageNotFoundError:
        return "0+checkout"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobvisor",
        description="Run parallel jobs that recover from runtime errors by themselves.",
    )
    parser.add_argument("--version", action="version", version=f"jobvisor {_version()}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
