"""The package installs as one import name and its layering holds (import-linter)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_for_installation():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    mapping = pyproject["tool"]["setuptools"]["package-dir"]
    on_disk = set()
    for package, folder in mapping.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            if "__pycache__" not in relative:
                on_disk.add(".".join((package, *relative)))
    assert on_disk == listed


def test_layers_hold():
    """ARCHITECTURE.md's import rules, as import-linter contracts in pyproject.toml."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "lint_imports.py")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_ruff_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_help_does_not_import_tensorflow():
    """`edgeline --help` answers fast: heavy imports wait for the command that needs them."""
    code = "import sys, edgeline.cli as c; c.build_parser(); print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
