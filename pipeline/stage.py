"""The contract between the runner and a stage.

A stage is declared, TFX-style, by what it takes and what it gives: its options dataclass,
the artifact type it publishes, and a ``run`` function. The runner hands ``run`` a
:class:`StageContext` (options, input artifacts, a private output directory, the seed) and
publishes what it returns. Stages never see the run store or each other's internals.

How the pipeline reads and shows an artifact type it knows nothing of is an
:class:`ArtifactView`, registered beside the stages (``StageRegistry.register_view``): its
headline figures, its section of the run report, and the deployable files it holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgeline.pipeline.artifacts import Artifact
from edgeline.pipeline.lazy import lazy_public_names  # noqa: F401  (stages' __init__)

if TYPE_CHECKING:
    from edgeline.pipeline.report import Block, ExportedFile, StepArtifact


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


class ArtifactView(Protocol):
    """One artifact type as the pipeline sees it, without knowing its files or JSON keys (the
    views live in ``edgeline.common.artifact_types``)."""

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        """The 1-3 figures a user reads first (top-1, mAP, mean return, size, latency), by
        name; None for a figure the artifact should hold and does not."""

    def render(self, entry: StepArtifact) -> list[Block]:
        """The artifact's section of the run report (its PNGs not shown here follow)."""

    def exported_files(self, entry: StepArtifact) -> list[ExportedFile]:
        """The deployable files the artifact holds, with what their export measured."""


class StageRegistry:
    """Stages by name, and the artifact views by type; duplicate names are refused, unknown
    names list the known ones."""

    def __init__(self) -> None:
        self._stages: dict[str, Stage] = {}
        self._views: dict[str, ArtifactView] = {}

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

    def register_view(self, artifact_type: str, view: ArtifactView) -> ArtifactView:
        """How the report shows artifacts of ``artifact_type`` (a type without a view gets a
        generic rendering: its metrics, properties and PNGs)."""
        if artifact_type in self._views:
            raise ValueError(f"a view of {artifact_type!r} artifacts is already registered")
        self._views[artifact_type] = view
        return view

    def views(self) -> dict[str, ArtifactView]:
        """The registered artifact views by type."""
        return dict(self._views)
