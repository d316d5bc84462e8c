"""Weight clustering with TF-MOT ``cluster_weights``, then ``strip_clustering``.

Deep Compression's second stage (Han, Mao & Dally, ICLR 2016, Sec. 3, "trained quantization
and weight sharing"): the weights of each kernel are grouped into k clusters that share one
value, so a kernel is stored as log2(k)-bit indices plus k centroids; the centroids are then
fine-tuned with the gradients of their members summed. After pruning, ``preserve_sparsity``
keeps the pruned weights at zero (the zero cluster is fixed), so the two steps compose.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgeline.components.compress.finetune import (
    CompressedModel,
    TrainingData,
    fine_tune,
    require_epochs,
)
from edgeline.components.compress.options import ClusterOptions, FineTuneOptions
from edgeline.components.compress.selection import kernels, select_layers, wrap_layers

CENTROID_INITIALIZATIONS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density-based": "DENSITY_BASED",
    "random": "RANDOM",
}


def _clustering_support(number_of_clusters: int):
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.clustering.keras import (
        cluster,
        clusterable_layer,
        clustering_registry,
    )

    def supports(layer) -> str | None:
        registry = clustering_registry.ClusteringRegistry
        if isinstance(layer, clusterable_layer.ClusterableLayer):
            return None
        if not registry.supports(layer):
            return f"{type(layer).__name__} has no TF-MOT clustering support"
        # The registry maps some supported layers to no weights at all (DepthwiseConv2D,
        # BatchNormalization): wrapping them would cluster nothing.
        if not registry._weight_names(layer):  # noqa: SLF001 (TF-MOT 0.8 has no public twin)
            return f"TF-MOT clusters no weight of a {type(layer).__name__}"
        if isinstance(layer, keras.layers.Conv2D) and not (
            cluster.layer_has_enough_weights_to_cluster(layer, number_of_clusters, False)
        ):
            return f"fewer weights than {number_of_clusters} clusters need"
        return None

    return supports


def cluster_report(model, clustered_layers: list[str]) -> dict[str, Any]:
    """Distinct values and zeros per clustered kernel."""
    layers = {}
    for name in clustered_layers:
        values = kernels(model.get_layer(name))[0].numpy()
        layers[name] = {
            "unique_values": int(np.unique(values).size),
            "sparsity": float(np.mean(values == 0)),
        }
    return {"layers": layers}


def cluster(model, data: TrainingData, options: ClusterOptions,
            fine_tune_options: FineTuneOptions) -> CompressedModel:
    """A clustered copy of ``model``, fine-tuned, with the clustering wrappers stripped."""
    import tensorflow_model_optimization as tfmot

    require_epochs("cluster", fine_tune_options.epochs)
    selection = select_layers(model, options.layers,
                              _clustering_support(options.number_of_clusters))
    initialization = getattr(tfmot.clustering.keras.CentroidInitialization,
                             CENTROID_INITIALIZATIONS[options.centroid_initialization])

    def wrap(layer):
        return tfmot.clustering.keras.cluster_weights(
            layer,
            number_of_clusters=options.number_of_clusters,
            cluster_centroids_init=initialization,
            preserve_sparsity=options.preserve_sparsity,
        )

    wrapped = wrap_layers(model, selection.wrap, wrap)
    history = fine_tune(
        wrapped, data, epochs=fine_tune_options.epochs,
        learning_rate=fine_tune_options.learning_rate,
    )
    stripped = tfmot.clustering.keras.strip_clustering(wrapped)
    report = cluster_report(stripped, selection.wrap)
    report.update(
        method="cluster",
        number_of_clusters=options.number_of_clusters,
        centroid_initialization=options.centroid_initialization,
        preserve_sparsity=options.preserve_sparsity,
        selection=selection.to_json(),
    )
    return CompressedModel(model=stripped, report=report, history=history)
