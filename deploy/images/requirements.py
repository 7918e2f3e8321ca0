"""The requirement lines an image build installs, read from pyproject.toml.

``runtime``: the package's dependencies (what goes into the image's virtualenv).
``build``: the build backend (``[build-system] requires``) that builds the edgeproof wheel.
``wheelhouse``: both, plus pip (run from its wheel, so the images themselves carry no pip):
every wheel an offline build needs. Standard library only: it runs on the base image's bare
python3 inside the build as well as on the host (scripts/images.sh).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

KINDS = ("runtime", "build", "wheelhouse")


def requirements(pyproject: Path, kind: str) -> list[str]:
    """The requirement specifiers of ``kind`` (one of :data:`KINDS`)."""
    if kind not in KINDS:
        raise ValueError(f"unknown requirement kind {kind!r} (one of {', '.join(KINDS)})")
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    runtime = list(data["project"]["dependencies"])
    build = list(data["build-system"]["requires"])
    return {"runtime": runtime, "build": build, "wheelhouse": [*runtime, *build, "pip"]}[kind]


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in KINDS:
        print(f"usage: {argv[0]} PYPROJECT_TOML {{{'|'.join(KINDS)}}}", file=sys.stderr)
        return 2
    print("\n".join(requirements(Path(argv[1]), argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
