"""Print the dependencies of pyproject.toml, one per line, for ``pip install -r`` (used by deploy/Dockerfile).

The images install the dependencies before copying the code, so the heavy layer (torch and CUDA) stays cached
while the code changes; reading them from pyproject.toml keeps the images from drifting from the package.
``--without`` drops distributions by name (the fitting-service image leaves out torch, Ray and the data
libraries); a name that is not a dependency is an error, so a renamed dependency cannot slip through.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical(match.group(1))


def dependencies(pyproject: Path, without: Iterable[str] = ()) -> list[str]:
    """The ``[project] dependencies`` of ``pyproject``, minus the distributions named in ``without``."""
    with open(pyproject, "rb") as f:
        deps: list[str] = tomllib.load(f)["project"]["dependencies"]
    skip = {canonical(n) for n in without}
    unknown = skip - {requirement_name(d) for d in deps}
    if unknown:
        raise ValueError(f"--without names no dependency of {pyproject}: {', '.join(sorted(unknown))}")
    return [d for d in deps if requirement_name(d) not in skip]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    parser.add_argument("--without", nargs="*", default=[], metavar="NAME", help="distributions to leave out")
    args = parser.parse_args(argv)
    try:
        print("\n".join(dependencies(args.pyproject, args.without)))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
