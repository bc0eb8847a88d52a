"""Runs the import contract (pyproject.toml, [tool.importlinter]) over the package as the wheel lays it out.

The services live outside src/ (pyproject's package-dir puts services/embedder at
kinship/embedder, ...), and import-linter reads a package from one folder; so the house
is assembled in a temporary folder of links, as the wheel installs it, and checked there.
`--overlay MODULE=FILE` adds a module to that tree (tests/unit/test_import_contract.py
shows the contract failing on a wrong import this way). Exit status: lint-imports'.

    python scripts/lint_imports.py [--overlay kinship.runtime.wrong=/tmp/wrong.py]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """Package name -> its folder, from pyproject.toml's [tool.setuptools.package-dir]."""
    project = tomllib.loads((root / "pyproject.toml").read_text())
    return {name: root / folder for name, folder in project["tool"]["setuptools"]["package-dir"].items()}


def _link_children(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for child in source.iterdir():
        if child.name == "__pycache__" or (target / child.name).exists():
            continue
        (target / child.name).symlink_to(child, target_is_directory=child.is_dir())


def assemble(into: Path, overlays: dict[str, Path] | None = None, root: Path = ROOT) -> Path:
    """The installed layout under `into`: each package a folder of links to its sources.

    An overlay module's folders are made real (links to their other files), so the module is
    added to the tree without writing into the sources.
    """
    dirs = package_dirs(root)
    for name in sorted(dirs, key=lambda n: n.count(".")):  # parents first
        _link_children(dirs[name], into.joinpath(*name.split(".")))
    for module, source in (overlays or {}).items():
        *parents, leaf = module.split(".")
        folder = into
        for part in parents:
            folder = folder / part
            if folder.is_symlink():  # a linked sub-package: make it a real folder of links
                linked = folder.resolve()
                folder.unlink()
                _link_children(linked, folder)
        (folder / f"{leaf}.py").write_text(Path(source).read_text())
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overlay", action="append", default=[], metavar="MODULE=FILE")
    parser.add_argument("--config", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    overlays = dict(item.split("=", 1) for item in args.overlay)
    with tempfile.TemporaryDirectory(prefix="kinship-house-") as folder:
        house = assemble(Path(folder) / "house", {m: Path(f) for m, f in overlays.items()})
        env = {**os.environ, "PYTHONPATH": str(house)}
        command = [str(Path(sys.executable).parent / "lint-imports"), "--config", str(args.config), "--no-cache"]
        # From the house folder: the editable install's finder must not answer for kinship first.
        return subprocess.run(command, cwd=house, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
