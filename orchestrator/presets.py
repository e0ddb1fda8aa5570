"""The sweep specs that ship inside the package: the quickstart and the paper presets (``orchestrator/sweeps/``).

Found with ``importlib.resources``, not through the repository, so a wheel, ``pip install .`` or a Docker image
without ``-e`` can run ``scaling-sweep quickstart`` too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

FOLDER = "sweeps"


def preset_names() -> list[str]:
    """Names of the packaged specs (``quickstart``, ``paper-image``, ...)."""
    folder = resources.files("orchestrator") / FOLDER
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_path(name: str) -> Path:
    """The packaged spec ``name`` as a file path; an unknown name lists the packaged ones."""
    spec = resources.files("orchestrator") / FOLDER / f"{name}.yaml"
    if not spec.is_file():
        raise FileNotFoundError(f"no packaged sweep spec {name!r}; packaged: {', '.join(preset_names())}")
    return Path(str(spec))
