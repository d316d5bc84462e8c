"""The registry: names, lookups, refusals, options, plugins, and `edgeline models list`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from edgeline import models
from edgeline.cli import main
from edgeline.models import registry

OWN_NETWORKS = {
    "cnn", "densenet121", "densenet_bc100_cifar", "mobilenet_v1", "mobilenet_v2",
    "mobilenet_v2_detector", "resnet110_cifar", "resnet18", "resnet20_cifar", "resnet34",
    "resnet50", "resnet50_v2", "squeezenet1_0", "squeezenet1_1", "wide_resnet16_4",
    "wide_resnet28_10",
}


def test_names_are_sorted_and_hold_every_network():
    names = models.names()
    assert names == sorted(names)
    assert OWN_NETWORKS <= set(names)
    assert models.names(task="detection") == ["mobilenet_v2_detector"]
    # Other test modules may register networks of their own in the same session.
    own_classifiers = set(models.names(task="classification")) & OWN_NETWORKS
    assert own_classifiers == OWN_NETWORKS - {"mobilenet_v2_detector"}


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(models.UnknownModelError) as raised:
        models.build("resnet51")
    assert isinstance(raised.value, ValueError)
    message = str(raised.value)
    assert "model='resnet51'" in message
    assert all(name in message for name in models.names())


def test_duplicate_registration_is_refused():
    with pytest.raises(models.DuplicateModelError, match="'resnet50' is already registered"):
        models.register(
            "resnet50", "edgeline.models.cnn:cnn", default_input_shape=(32, 32, 3),
            default_num_classes=10, task="classification", description="another ResNet-50",
        )
    assert models.get("resnet50").builder == "edgeline.models.resnet:resnet"


def test_unknown_option_lists_the_options_the_builder_takes():
    with pytest.raises(models.ModelOptionError) as raised:
        models.build("cnn", survival_probability=0.5)
    message = str(raised.value)
    assert "survival_probability=0.5" in message and "stage_widths" in message


def test_preset_and_defaults_are_visible_and_overridable():
    spec = models.get("resnet110_cifar")
    options = spec.default_options()
    assert options["blocks_per_stage"] == (18, 18, 18)
    assert options["final_survival_probability"] == 0.5
    assert options["stem"] == "cifar" and options["version"] == 1  # a builder default
    model = models.build("cnn", num_classes=3, input_shape=(16, 16, 1), stage_widths=(4, 8))
    assert model.output_shape == (None, 3)
    assert model.name == "cnn"


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"input_shape": (16, 16, 3)}, "at least 32"),
        ({"input_shape": (32, 32)}, "rank 3"),
        ({"num_classes": 0}, "num_classes=0"),
    ],
)
def test_bad_build_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        models.build("resnet20_cifar", **arguments)


def test_other_modules_register_their_networks():
    def tiny(*, num_classes, input_shape, name, units=4):
        import tf_keras as keras

        inputs = keras.Input(input_shape)
        hidden = keras.layers.Dense(units)(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes)(hidden), name=name)

    models.register("test_tiny", tiny, default_input_shape=(3,), default_num_classes=2,
                    task="classification", description="a test network", min_input_size=0)
    try:
        assert "test_tiny" in models.names()
        model = models.build("test_tiny", units=6)
        assert model.output_shape == (None, 2) and model.layers[2].units == 6
    finally:
        models.unregister("test_tiny")
    assert "test_tiny" not in models.names()


def test_plugin_modules_are_imported_on_first_lookup(tmp_path, monkeypatch):
    (tmp_path / "edgeline_test_plugin.py").write_text(textwrap.dedent("""
        from edgeline.models.registry import register
        register("plugin_net", "edgeline.models.cnn:cnn", default_input_shape=(32, 32, 3),
                 default_num_classes=10, task="q_network", description="from a plugin")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PLUGIN_MODULES", ("edgeline_test_plugin",))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    try:
        assert "plugin_net" in models.names(task="q_network")
    finally:
        registry.unregister("plugin_net")
        sys.modules.pop("edgeline_test_plugin", None)


def test_listing_does_not_import_tensorflow():
    """`edgeline models list` stays quick: builders are resolved on first build."""
    script = (
        "import sys; from edgeline import models; names = models.names(); "
        "assert 'resnet50' in names; "
        "assert 'tensorflow' not in sys.modules, 'listing imported TensorFlow'"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_cli_lists_the_models(capsys):
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out.split() == models.names()


def test_every_builder_resolves_and_documents_its_options():
    for name in sorted(OWN_NETWORKS):  # not networks that other test modules register
        spec = models.get(name)
        builder = spec.resolve_builder()
        assert builder.__doc__ and spec.description
        assert set(spec.preset) <= set(spec.option_names()), name
        for option in spec.option_names():
            assert option in builder.__doc__, f"{name}: option {option} is not documented"
