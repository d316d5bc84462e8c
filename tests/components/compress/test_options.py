"""The compress options: strict configs, checked before any work starts."""

from __future__ import annotations

import pytest

from edgeline.components.compress.options import (
    CompressFrontierOptions,
    CompressOptions,
    default_recipes,
)
from edgeline.pipeline.config import parse_dataclass
from edgeline.pipeline.errors import ConfigError


def _parse(data, cls=CompressOptions):
    return parse_dataclass(cls, data, "compress")


def test_a_deep_compression_recipe_parses_with_each_methods_own_block():
    options = _parse({
        "steps": [
            {"method": "bn_fold"},
            {"method": "prune", "prune": {"target_sparsity": 0.5, "structure": "2:4",
                                          "layers": {"exclude_layers": ["head*"]}}},
            {"method": "cluster", "cluster": {"number_of_clusters": 8}},
            {"method": "qat", "qat": {"preserve": "sparsity_and_clusters"}},
        ],
        "fine_tune": {"epochs": 1, "augmentation": {"horizontal_flip": False}},
    })
    assert [s.method for s in options.steps] == ["bn_fold", "prune", "cluster", "qat"]
    assert options.steps[1].prune.structure == "2:4"
    assert options.steps[1].prune.layers.exclude_first_conv  # the pruning default
    assert options.steps[1].prune.layers.exclude_layers == ("head*",)
    assert not options.steps[2].cluster.layers.exclude_first_conv
    assert options.fine_tune.augmentation.horizontal_flip is False


@pytest.mark.parametrize("data, message", [
    ({"steps": [{"method": "prune", "prune": {"target_sparsity": 1.2}}]},
     "target_sparsity=1.2"),
    ({"steps": [{"method": "quantize"}]}, "method: expected one of"),
    ({"steps": [{"method": "qat"}, {"method": "prune"}]}, "qat only as the last step"),
    ({"steps": [{"method": "prune"}, {"method": "distill"}]}, "distill only as the first"),
    ({"steps": []}, "at least one method"),
    ({"steps": [{"method": "cluster", "cluster": {"number_of_clusters": 1}}]},
     "number_of_clusters=1"),
    ({"steps": [{"method": "distill", "distill": {"alpha": 2}}]}, "alpha=2"),
    ({"steps": [{"method": "prune", "sparsity": 0.5}]}, "unknown key"),
])
def test_bad_recipes_are_one_line_errors_naming_the_value(data, message):
    with pytest.raises(ConfigError, match=message):
        _parse(data)


def test_frontier_options_default_to_the_built_in_recipes():
    options = _parse({}, CompressFrontierOptions)
    assert options.mode == "frontier"
    assert set(options.resolved_recipes()) == set(default_recipes())
    with pytest.raises(ConfigError, match="accuracy_budget=-1"):
        _parse({"frontier": {"accuracy_budget": -1}}, CompressFrontierOptions)
    with pytest.raises(ConfigError, match="qat only as the last step"):
        _parse({"recipes": {"bad": {"steps": [{"method": "qat"}, {"method": "cluster"}]}}},
               CompressFrontierOptions)


def test_the_stages_are_registered_with_their_artifact_types():
    from edgeline.cli import stage_registry

    registry = stage_registry()
    assert registry.get("compress").artifact_type == "Model"
    assert registry.get("compress").options_type is CompressOptions
    assert registry.get("compress_frontier").artifact_type == "Frontier"
    assert registry.get("compress_frontier").options_type is CompressFrontierOptions
