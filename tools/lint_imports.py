"""Check the import-linter contracts in pyproject.toml against the installed layout.

The repo keeps pipeline/, components/ and models/ at the top level and maps them into the
`edgeline` package at install time (pyproject's package-dir). import-linter walks a package
by its folder, so this assembles the installed layout (copies of the .py files) in a temporary
folder and runs `lint-imports` there.

    python tools/lint_imports.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def assemble(target: Path) -> None:
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for package, folder in mapping.items():
        destination = target.joinpath(*package.split("."))
        for source in (REPO / folder).rglob("*.py"):
            relative = source.relative_to(REPO / folder)
            if "__pycache__" in relative.parts:
                continue
            out = destination / relative
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        assemble(Path(tmp))
        env = dict(os.environ, PYTHONPATH=tmp)
        command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache",
                   "--config", str(REPO / "pyproject.toml")]
        return subprocess.run(command, cwd=tmp, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
