"""Fail unless the named distributions are installed at exactly the given versions.

`make test-compat` pre-installs older numpy/scipy/pillow into a fresh virtualenv, then installs
cvd without constraints: a pin or a too-high lower bound in cvd's metadata would make pip replace
them, which is what a user installing cvd beside another project must not meet.

Usage: python scripts/check_installed.py numpy==2.0.2 scipy==1.13.1 pillow==11.0.0
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version


def mismatches(requirements: list[str]) -> list[str]:
    """One line per `name==version` requirement that the environment does not hold exactly."""
    problems = []
    for requirement in requirements:
        name, _, wanted = requirement.partition("==")
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "not installed"
        if found != wanted:
            problems.append(f"{name}: expected {wanted}, found {found}")
    return problems


def main(argv: list[str]) -> int:
    problems = mismatches(argv)
    for line in problems:
        print(f"check_installed: {line}", file=sys.stderr)
    if not problems:
        print(f"check_installed: kept {' '.join(argv)}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
