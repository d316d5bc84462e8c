"""Lazy public names for stage packages, in a module that imports only the standard library.

A stage package's ``__init__`` runs whenever any of its modules is imported, ``edgeline
coco-eval``'s (``components/evaluate/coco_cli.py``) included: taking this helper from here
rather than from :mod:`edgeline.pipeline.stage` keeps that command from importing the stage
contract, the artifact types and the options it never uses (a fiftieth of a second of its
start-up, which users time against pycocotools).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def lazy_public_names(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A stage package's module ``__getattr__`` (PEP 562) for its public names.

    ``names`` maps each public name to the stage module that defines it. The module is imported
    on first use, so ``import edgeline.components.train`` (which reading a config does) costs no
    TensorFlow import, while other stages still reach the stage through its ``__init__`` only.
    """
    import importlib

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no public name {name!r}; it has "
                                 f"{', '.join(sorted(names))}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    return __getattr__
