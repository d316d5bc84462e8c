"""Typed views of the artifacts the stages publish, one module per type.

    Examples     (ingest)              examples.py       TFRecord shards, labels.txt
    Model        (train, compress)     model.py          the Model directory of models/io.py
    Metrics      (evaluate)            metrics.py        metrics.json and its plots
    Policy       (rl)                  policy.py         policy.json, history.json, policy.tflite
    TFLiteModel  (export)              tflite_model.py   model.tflite and export.json
    Frontier     (compress_frontier)   frontier.py       frontier.json, its table and plots

Each module owns its type's file names (the stages import them from here), reads its files,
picks the artifact's headline figures, and renders the artifact in the run report. The pipeline
knows none of this: ``edgeline.cli.stage_registry()`` registers :data:`VIEWS` with the runner,
which hands them to the report (``StageRegistry.register_view``).
"""

from __future__ import annotations

import sys

from edgeline.common.artifact_types.examples import Examples
from edgeline.common.artifact_types.frontier import Frontier
from edgeline.common.artifact_types.metrics import Metrics
from edgeline.common.artifact_types.model import Model
from edgeline.common.artifact_types.policy import Policy
from edgeline.common.artifact_types.tflite_model import TFLiteModel

# One view per artifact type, in pipeline order; each names its type in ``type_name``.
VIEWS = (Examples(), Model(), Metrics(), Frontier(), Policy(), TFLiteModel())



def file_names() -> tuple[str, ...]:
    """Every file and folder name an artifact type owns (its ``*_FILE``, ``*_DIR`` and
    ``*_PLOT`` constants): what the pipeline must never name itself."""
    names = set()
    for view in VIEWS:
        module = sys.modules[type(view).__module__]
        names.update(value for key, value in vars(module).items()
                     if key.endswith(("_FILE", "_DIR", "_PLOT")) and isinstance(value, str))
    return tuple(sorted(names))


__all__ = ["VIEWS", "Examples", "Frontier", "Metrics", "Model", "Policy", "TFLiteModel",
           "file_names"]
