"""The ingest stage: ImageNet folders or tars, and COCO-format sets, to TFRecord Examples (Beam).

Its public names (no other stage calls it; the CLI and tests do):

    run              the stage core (core.run)
    IngestOptions
"""

from edgeline.components.ingest.options import IngestOptions
from edgeline.pipeline.stage import lazy_public_names

__getattr__ = lazy_public_names(__name__, {"run": "core"})
__all__ = ["IngestOptions", "run"]
