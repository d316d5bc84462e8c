"""The contract between the runner and a stage.

A stage is declared, TFX-style, by what it takes and what it gives: its options dataclass,
the artifact type it publishes, and a ``run`` function. The runner hands ``run`` a
:class:`StageContext` (options, input artifacts, a private output directory, the seed) and
publishes what it returns. Stages never see the run store or each other's internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from edgeline.pipeline.artifacts import Artifact


@dataclasses.dataclass
class StageContext:
    step: str  # the step's name in the pipeline file
    options: Any  # the stage's options dataclass instance
    inputs: Mapping[str, Artifact]  # input step name -> its published artifact
    output_dir: Path  # write everything here; the runner publishes it atomically
    seed: int
    deterministic: bool
    cache_dir: Path  # shared scratch space kept across runs (e.g. generated demo data)

    def input_of_type(self, artifact_type: str) -> Artifact:
        """The one input artifact of ``artifact_type`` (a clear error if there is not one)."""
        from edgeline.pipeline.errors import ConfigError

        found = [a for a in self.inputs.values() if a.type == artifact_type]
        if len(found) != 1:
            raise ConfigError(
                f"{self.step}.inputs: expected exactly one {artifact_type} artifact, "
                f"received {len(found)} ({', '.join(self.inputs) or 'no inputs'})"
            )
        return found[0]


@dataclasses.dataclass
class StageResult:
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str  # "ingest", "train", ...
    options_type: type  # a dataclass; its fields are the step's config keys
    artifact_type: str  # what it publishes: "Examples", "Model", "Metrics", ...
    run: Callable[[StageContext], StageResult]
    # Identity of data outside the pipeline that the step reads (a source folder), folded
    # into the fingerprint so that changed inputs are not mistaken for a cache hit.
    external_fingerprint: Callable[[Any], Any] | None = None
    description: str = ""


class StageRegistry:
    """Stages by name; duplicate names are refused, unknown names list the known ones."""

    def __init__(self) -> None:
        self._stages: dict[str, Stage] = {}

    def register(self, stage: Stage) -> Stage:
        if stage.name in self._stages:
            raise ValueError(f"a stage named {stage.name!r} is already registered")
        self._stages[stage.name] = stage
        return stage

    def get(self, name: str) -> Stage:
        from edgeline.pipeline.errors import ConfigError

        if name not in self._stages:
            raise ConfigError(
                f"unknown stage {name!r}; known stages: {', '.join(sorted(self._stages))}"
            )
        return self._stages[name]

    def options_types(self) -> dict[str, type]:
        return {name: stage.options_type for name, stage in self._stages.items()}

    def __contains__(self, name: str) -> bool:
        return name in self._stages

    def names(self) -> list[str]:
        return list(self._stages)

