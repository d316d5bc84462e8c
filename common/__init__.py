"""edgeline.common: the stage-neutral layer, below the stages and beside ``models``.

What two or more stages need lives here, once, and nowhere else:

- typed artifact views (``artifact_types``): each artifact type owns its file names, its
  reader and writer, its headline metrics, and how it renders in the run report;
- the shared runtime: evaluation-time preprocessing, the one LiteRT runner, COCO conversion and
  scoring, the Gym/Atari environments, and determinism.

It knows no stage: ``edgeline.components`` imports it, never the other way round (an
import-linter contract in pyproject.toml keeps it so).
"""
