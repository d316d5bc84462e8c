"""Quantization-aware training with TF-MOT (Jacob et al., "Quantization and Training of Neural
Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018).

Fake-quantization nodes simulate int8 weights and activations in the forward pass while the
float weights keep learning (straight-through estimator), and they record the activation
ranges that the int8 TFLite converter then uses instead of a calibration set.

The collaborative schemes of ``tfmot.experimental.combine`` make QAT keep what earlier steps
did: ``Default8BitPrunePreserveQuantizeScheme`` keeps the pruned zeros, and
``Default8BitClusterPreserveQuantizeScheme`` keeps the cluster structure (with
``preserve_sparsity=True``, both: PCQAT).

Layers are annotated one by one (``quantize_annotate_layer``), so a subset can be chosen and
a layer the default 8-bit registry does not know is either given a :class:`QuantizeConfig`
(the weightless custom layers of :mod:`edgeline.models.layers`) or left in float with the
reason reported, never a crash.
"""

from __future__ import annotations

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.compress.finetune import (
    CompressedModel,
    TrainingData,
    fine_tune,
    require_epochs,
)
from edgeline.components.compress.options import FineTuneOptions, QatOptions
from edgeline.components.compress.selection import (
    copy_model,
    kernels,
    select_layers,
    wrap_layers,
)

# A kernel is taken as pruned when this share of it is zero, and as clustered when it holds at
# most this many distinct values (and far fewer than its size).
SPARSE_KERNEL = 0.3
CLUSTERED_KERNEL = 256


@keras.saving.register_keras_serializable(package="edgeline_compress")
class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantizes only the output of a weightless layer, with the moving-average range of the
    default 8-bit scheme (asymmetric, 8 bits), as TF-MOT does for ``Add``."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="edgeline_compress")
class NoOpQuantizeConfig(OutputQuantizeConfig):
    """Quantizes nothing: for layers that only move values (zero padding of channels), whose
    output range is their input's."""

    def get_output_quantizers(self, layer):
        return []


# Custom layers of the registry that hold no weights: what their output needs.
CUSTOM_QUANTIZE_CONFIGS = {
    "StochasticDepth": OutputQuantizeConfig,  # shortcut + p * residual: a new range
    "ChannelZeroPad": NoOpQuantizeConfig,  # appends zeros: the input's range
}


def quantize_scope(model=None):
    """The custom-object scope that loading a QAT model needs (TF-MOT's wrappers and
    quantizers, plus the configs above). With ``model``, its own layer classes too: TF-MOT
    rebuilds the model from its config, which needs every class by name even when it was
    never registered for serialization."""
    objects = {"OutputQuantizeConfig": OutputQuantizeConfig,
               "NoOpQuantizeConfig": NoOpQuantizeConfig}
    for layer in getattr(model, "layers", ()):
        objects.setdefault(type(layer).__name__, type(layer))
    return tfmot.quantization.keras.quantize_scope(objects)


def _default_registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def _quantize_support(registry):
    def supports(layer) -> str | None:
        if registry.supports(layer) or type(layer).__name__ in CUSTOM_QUANTIZE_CONFIGS:
            return None
        if isinstance(layer, keras.layers.BatchNormalization):
            return None  # folded into the conv before it by the scheme's layout transforms
        return f"{type(layer).__name__} has no 8-bit QuantizeConfig (left in float)"

    return supports


def detect_preservation(model) -> str:
    """``none``, ``sparsity``, ``clusters`` or ``sparsity_and_clusters``: what the kernels show
    of earlier pruning or clustering."""
    sparse = clustered = False
    sizes = []
    for layer in model.layers:
        for weight in kernels(layer):
            values = weight.numpy()
            sizes.append(values.size)
            if values.size < 4 * CLUSTERED_KERNEL:
                continue  # too small to tell clustering from chance
            sparse = sparse or float(np.mean(values == 0)) >= SPARSE_KERNEL
            clustered = clustered or np.unique(values).size <= CLUSTERED_KERNEL
    if sparse and clustered:
        return "sparsity_and_clusters"
    return "sparsity" if sparse else "clusters" if clustered else "none"


def _relu_after_layer_transforms():
    """TF-MOT's ``LayerReLUQuantize`` (and its ``Activation('relu')`` twin), fixed for layers
    with weights.

    In TF-MOT 0.8.1 a Conv2D, DepthwiseConv2D or Dense followed by a ReLU layer gets a
    ``NoOpQuantizeConfig``: meant to keep a fake-quant out from between the layer and its
    ReLU, it also drops the layer's *weight* quantizer, so the weights train unquantized and
    the pruning- and cluster-preserving schemes never see them (QAT then undoes pruning and
    clustering: every layer BN folding leaves as conv -> ReLU). Here such a layer keeps its
    registry config and only its activation becomes ``NoOpActivation``, as TF-MOT's own
    Conv2D + BatchNorm transform does; an ``Add`` followed by a ReLU keeps TF-MOT's rule.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_aware_activation,
    )
    from tensorflow_model_optimization.python.core.quantization.keras import (
        utils as quantize_utils,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as transforms,
    )

    def keep_weight_quantizer(match_layer, fallback):
        layer_node = match_layer.input_layers[0]
        config = layer_node.layer["config"]
        if layer_node.layer["class_name"] == "Add" or config.get("activation") != "linear":
            return fallback(match_layer)
        if layer_node.metadata.get("quantize_config") is not None:
            return match_layer  # a config the user chose stays
        config["activation"] = quantize_utils.serialize_activation(
            quantize_aware_activation.NoOpActivation(), use_legacy_format=True)
        return match_layer

    def keeping_weight_quantizer(rule):
        """TF-MOT's ``rule`` with its replacement through ``keep_weight_quantizer``, under
        the rule's own class name (TF-MOT's model transformer keys its matches by it)."""

        class Rule(rule):
            def replacement(self, match_layer):
                return keep_weight_quantizer(match_layer, super().replacement)

            def custom_objects(self):
                return {**super().custom_objects(),
                        "NoOpActivation": quantize_aware_activation.NoOpActivation}

        Rule.__name__ = Rule.__qualname__ = rule.__name__
        return Rule

    return (keeping_weight_quantizer(transforms.LayerReLUQuantize),
            keeping_weight_quantizer(transforms.LayerReluActivationQuantize))


def _layout_transform():
    """TF-MOT's default 8-bit layout transforms, with the ReLU rule of
    :func:`_relu_after_layer_transforms` (same order as TF-MOT 0.8.1's list)."""
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_layout_transform as layout,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as transforms,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.graph_transformations import (  # noqa: E501
        model_transformer,
    )

    layer_relu, layer_relu_activation = _relu_after_layer_transforms()

    class LayoutTransform(layout.Default8BitQuantizeLayoutTransform):
        def apply(self, model, layer_quantize_map):
            steps = [
                transforms.InputLayerQuantize(),
                transforms.SeparableConv1DQuantize(),
                transforms.SeparableConvQuantize(),
                transforms.Conv2DReshapeBatchNormReLUQuantize(),
                transforms.Conv2DReshapeBatchNormActivationQuantize(),
                transforms.Conv2DBatchNormReLUQuantize(),
                transforms.Conv2DBatchNormActivationQuantize(),
                transforms.Conv2DReshapeBatchNormQuantize(),
                transforms.Conv2DBatchNormQuantize(),
                transforms.ConcatTransform6Inputs(),
                transforms.ConcatTransform5Inputs(),
                transforms.ConcatTransform4Inputs(),
                transforms.ConcatTransform3Inputs(),
                transforms.ConcatTransform(),
                transforms.DenseBatchNormQuantize(),
                transforms.DenseBatchNormReLUQuantize(),
                transforms.DenseBatchNormActivationQuantize(),
                layer_relu(),
                layer_relu_activation(),
            ]
            return model_transformer.ModelTransformer(
                model, steps, set(layer_quantize_map.keys()), layer_quantize_map
            ).transform()

    return LayoutTransform()


class _Scheme(tfmot.quantization.keras.QuantizeScheme):
    """A TF-MOT scheme's registry with the fixed layout transforms."""

    def __init__(self, registry):
        self._registry = registry

    def get_layout_transformer(self):
        return _layout_transform()

    def get_quantize_registry(self):
        return self._registry


def _cluster_preserve_registry(preserve_sparsity: bool):
    """TF-MOT's cluster-preserving registry with one weight quantizer per layer.

    TF-MOT 0.8.1's registry shares one quantizer among all layers of a kind (all Conv2D, all
    Dense), and a quantizer that meets a kernel without zeros turns its ``preserve_sparsity``
    off for good (``_build_clusters``), so every layer of that kind built afterwards loses its
    pruned zeros in PCQAT. A fresh quantizer per layer keeps that decision per layer.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E501
        cluster_preserve_quantize_registry as registry_module,
    )

    base = registry_module.Default8bitClusterPreserveQuantizeRegistry

    class PerLayerRegistry(base):
        def get_quantize_config(self, layer):
            base.__init__(self, preserve_sparsity)  # fresh quantizers for this layer
            return super().get_quantize_config(layer)

    return PerLayerRegistry(preserve_sparsity)


def quantize_scheme(preserve: str):
    """The 8-bit scheme for ``preserve`` (see :class:`QatOptions`), with TF-MOT's registries
    and the layout fix above."""
    combine = tfmot.experimental.combine
    if preserve == "sparsity":
        registry = combine.Default8BitPrunePreserveQuantizeScheme().get_quantize_registry()
    elif preserve in ("clusters", "sparsity_and_clusters"):
        registry = _cluster_preserve_registry(preserve == "sparsity_and_clusters")
    else:
        registry = _default_registry()
    return _Scheme(registry)


def annotate(model, options: QatOptions):
    """A copy of ``model`` with the chosen layers annotated for quantization, and the
    selection (what was annotated, what was left in float and why)."""
    selection = select_layers(model, options.layers, _quantize_support(_default_registry()))
    annotate_names = set(selection.wrap)
    # Weightless custom layers never reach select_layers (it only looks at layers with
    # weights); annotate them too so their outputs are quantized in an int8 graph.
    for layer in model.layers:
        if type(layer).__name__ in CUSTOM_QUANTIZE_CONFIGS and not layer.weights:
            annotate_names.add(layer.name)
        elif (not layer.weights and not isinstance(layer, keras.layers.InputLayer)
              and _default_registry().supports(layer)):
            annotate_names.add(layer.name)
    annotate_names -= set(selection.skipped)

    def wrap(layer):
        config_type = CUSTOM_QUANTIZE_CONFIGS.get(type(layer).__name__)
        if config_type is not None:
            return tfmot.quantization.keras.quantize_annotate_layer(layer, config_type())
        return tfmot.quantization.keras.quantize_annotate_layer(layer)

    names = [layer.name for layer in model.layers if layer.name in annotate_names]
    return wrap_layers(model, names, wrap), selection


def quantize_aware(model, options: QatOptions):
    """The fake-quantized copy of ``model`` (not yet fine-tuned), and the report."""
    preserve = detect_preservation(model) if options.preserve == "auto" else options.preserve
    annotated, selection = annotate(model, options)
    with quantize_scope(model):
        quantized = tfmot.quantization.keras.quantize_apply(
            annotated, scheme=quantize_scheme(preserve)
        )
    report = {
        "method": "qat",
        "preserve": preserve,
        "requested_preserve": options.preserve,
        "selection": selection.to_json(),
    }
    return quantized, report


def _is_range_variable(weight) -> bool:
    """A scalar activation/output range (not a weight range, which TF-MOT recomputes from
    the weights at every step)."""
    short = weight.name.split("/")[-1].split(":")[0]
    return (weight.shape.rank == 0 and short.endswith(("_min", "_max"))
            and "kernel" not in short)


def calibrate_ranges(quantized, reference, images) -> int:
    """Start every activation range at what the float network shows on ``images``.

    TF-MOT starts them at [-6, 6] and moves them by an exponential moving average with decay
    0.999, which needs thousands of steps to reach the real ranges: longer than a short
    fine-tuning, whose int8 model would then waste most of its 256 levels. Starting from
    the observed min/max (widened to hold 0, as TFLite requires), as post-training
    calibration does, lets the fine-tuning refine rather than find them. Returns how many
    ranges were set.
    """
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_layer

    # A fresh copy: the caller's layers may belong to several models (TF-MOT's strip
    # functions reuse them), and only a layer used once has one ``.output`` to probe.
    reference = copy_model(reference)
    targets, tensors = [], []
    for layer in quantized.layers:
        ranges = [w for w in layer.weights if _is_range_variable(w)]
        if not ranges:
            continue
        if isinstance(layer, quantize_layer.QuantizeLayer):
            tensor = reference.inputs[0]
        else:
            inner = getattr(layer, "layer", None)
            try:
                tensor = reference.get_layer(inner.name).output if inner is not None else None
            except (ValueError, AttributeError):  # not in the reference, or called twice
                tensor = None
        if tensor is not None:
            targets.append(ranges)
            tensors.append(tensor)
    if not tensors:
        return 0
    probe = keras.Model(reference.inputs, tensors)
    outputs = probe.predict(images, batch_size=64, verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    for ranges, values in zip(targets, outputs):
        low, high = min(0.0, float(np.min(values))), max(0.0, float(np.max(values)))
        for weight in ranges:
            weight.assign(low if weight.name.split(":")[0].endswith("_min") else high)
    return len(targets)


def qat(model, data: TrainingData, options: QatOptions,
        fine_tune_options: FineTuneOptions) -> CompressedModel:
    """A quantization-aware copy of ``model``, fine-tuned; convert it with quantize='int8'."""
    require_epochs("qat", fine_tune_options.epochs)
    quantized, report = quantize_aware(model, options)
    report["calibrated_ranges"] = calibrate_ranges(
        quantized, model, data.sample_images(count=256, batches=8))
    history = fine_tune(quantized, data, epochs=fine_tune_options.epochs,
                        learning_rate=fine_tune_options.learning_rate)
    if report["preserve"] in ("clusters", "sparsity_and_clusters"):
        # CQAT trains through centroid and association variables; strip them so the saved
        # model holds plain (clustered) kernels under the fake-quant wrappers.
        quantized = tfmot.experimental.combine.strip_clustering_cqat(quantized)
    return CompressedModel(model=quantized, report=report, history=history)
