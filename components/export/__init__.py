"""The export stage: a Model in, a parity-checked .tflite out (float32, float16, dynamic, int8).

Its public names, the only ones other stages may use (compress exports every recipe with them):

    run                      the stage core (core.run)
    ParityGateFailed         raised when the file's metric falls short of the source's
    is_quantization_aware    whether a Keras model carries QAT fake-quant layers
    ExportOptions
"""

from edgeline.components.export.options import ExportOptions
from edgeline.pipeline.stage import lazy_public_names

__getattr__ = lazy_public_names(__name__, {
    "run": "core", "ParityGateFailed": "core", "is_quantization_aware": "convert",
})
__all__ = ["ExportOptions", "ParityGateFailed", "is_quantization_aware", "run"]
