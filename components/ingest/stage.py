"""The ingest stage's binding to the pipeline runner (nothing heavy imported here)."""

from __future__ import annotations

from edgeline.components.ingest.options import IngestOptions
from edgeline.pipeline.stage import Stage, StageContext, StageResult


def run_stage(context: StageContext) -> StageResult:
    from edgeline.components.ingest import core

    return core.run(
        context.options,
        context.output_dir,
        cache_dir=context.cache_dir,
        seed=context.seed,
        progress=True,  # a bar in a terminal, plain lines in a log (the console decides)
    )


def external_fingerprint(options: IngestOptions) -> dict:
    from edgeline.components.ingest.core import source_fingerprint

    return source_fingerprint(options)


STAGES = (
    Stage(
        name="ingest",
        options_type=IngestOptions,
        artifact_type="Examples",
        run=run_stage,
        external_fingerprint=external_fingerprint,
        description=(
            "Apache Beam: an ImageNet folder or ILSVRC tars, or a COCO set, to sharded "
            "TFRecords; problem images fixed or rejected by content, every input accounted for."
        ),
    ),
)
