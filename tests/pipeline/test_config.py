"""Strict configs: unknown keys, wrong types and missing paths are one clear error."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from edgeline.pipeline.config import (
    ExistingPath,
    apply_overrides,
    load_pipeline_config,
    load_yaml,
    parse_dataclass,
    parse_override,
)
from edgeline.pipeline.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Schedule:
    name: Literal["cosine", "step"] = "cosine"
    warmup_epochs: int = 0


@dataclasses.dataclass(frozen=True)
class Options:
    epochs: int = 1
    learning_rate: float = 0.1
    source: ExistingPath | None = None
    tags: tuple[str, ...] = ()
    schedule: Schedule = dataclasses.field(default_factory=Schedule)

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"Received: epochs={self.epochs}; epochs must be >= 1")


STAGES = {"toy": Options}


def _pipeline(**step):
    return {"name": "t", "seed": 3, "steps": {"train": {"stage": "toy", **step}}}


def test_defaults_fill_in_and_resolved_config_lists_them():
    config = load_pipeline_config(None, STAGES, data=_pipeline(epochs=2))
    step = config.step("train")
    assert step.options == Options(epochs=2)
    assert config.resolved()["steps"]["train"]["schedule"] == {"name": "cosine", "warmup_epochs": 0}
    assert config.seed == 3 and config.deterministic is False


@pytest.mark.parametrize(
    "step, message",
    [
        ({"epocs": 2}, "train.epocs: unknown key (received 2)"),
        ({"epochs": "3x"}, "train.epochs: expected an integer, received '3x'"),
        ({"epochs": True}, "train.epochs: expected an integer, received True"),
        ({"epochs": 0}, "Received: epochs=0"),
        ({"learning_rate": "fast"}, "train.learning_rate: expected a number, received 'fast'"),
        ({"source": "/no/such/dir"}, "train.source: path does not exist: '/no/such/dir'"),
        ({"schedule": {"name": "linear"}}, "train.schedule.name: expected one of"),
        ({"schedule": {"warmup": 1}}, "train.schedule.warmup: unknown key"),
        ({"tags": "a"}, "train.tags: expected a list, received 'a'"),
    ],
)
def test_bad_values_name_the_key_and_the_value(step, message):
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(None, STAGES, data=_pipeline(**step))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_top_level_key_and_stage_and_input():
    with pytest.raises(ConfigError, match="^sed: unknown key"):
        load_pipeline_config(None, STAGES, data={"sed": 1, "steps": {}})
    with pytest.raises(ConfigError, match="unknown stage 'tran'; known stages: toy"):
        load_pipeline_config(None, STAGES, data={"steps": {"a": {"stage": "tran"}}})
    with pytest.raises(ConfigError, match="'later' is not an earlier step"):
        load_pipeline_config(
            None, STAGES, data={"steps": {"a": {"stage": "toy", "inputs": ["later"]},
                                          "later": {"stage": "toy"}}}
        )


def test_overrides_reach_steps_and_top_level_keys():
    data = apply_overrides(_pipeline(), ["train.epochs=5", "train.schedule.name=step", "seed=9"])
    config = load_pipeline_config(None, STAGES, data=data)
    assert config.step("train").options.epochs == 5
    assert config.step("train").options.schedule.name == "step"
    assert config.seed == 9
    with pytest.raises(ConfigError, match="no step named 'trian'"):
        apply_overrides(_pipeline(), ["trian.epochs=5"])
    with pytest.raises(ConfigError, match="expects key=value"):
        apply_overrides(_pipeline(), ["train.epochs"])


def test_existing_path_resolves_relative_to_the_config_folder(tmp_path):
    (tmp_path / "data").mkdir()
    config_file = tmp_path / "configs" / "p.yaml"
    config_file.parent.mkdir()
    config_file.write_text("steps:\n  train:\n    stage: toy\n    source: ../data\n")
    config = load_pipeline_config(str(config_file), STAGES)
    assert config.step("train").options.source == str(config_file.parent / "../data")


def test_parse_dataclass_rejects_non_mapping():
    with pytest.raises(ConfigError, match="x: expected a mapping, received 3"):
        parse_dataclass(Options, 3, "x")


def test_invalid_yaml_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_pipeline_config(str(bad), STAGES)
    with pytest.raises(ConfigError, match="config file does not exist"):
        load_pipeline_config(str(tmp_path / "missing.yaml"), STAGES)


@dataclasses.dataclass(frozen=True)
class Precision:
    mixed_precision: Literal["off", "auto"] = "auto"
    learning_rate: float = 0.1


def test_yaml_1_1_spellings_read_as_people_mean_them():
    """PyYAML reads `1e-5` as a string and a bare `off` as False (YAML 1.1)."""
    import yaml

    data = yaml.safe_load("mixed_precision: off\nlearning_rate: 1e-5\n")
    assert data == {"mixed_precision": False, "learning_rate": "1e-5"}
    options = parse_dataclass(Precision, data, "step")
    assert options == Precision(mixed_precision="off", learning_rate=1e-5)
    with pytest.raises(ConfigError, match="learning_rate: expected a number, received 'fast'"):
        parse_dataclass(Precision, {"learning_rate": "fast"}, "step")


# -- hostile configs (issue "Nothing lost, nothing hung", items 17, 18 and 20) ---------------

# 1 KB that expands to 10**9 strings, inside an option that takes any mapping.
BILLION_LAUGHS = "steps:\n  classifier:\n    stage: train\n    model_options:\n" + "".join(
    f"      l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]\n" if level else
    "      l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in range(9)
)


def _run_cli(tmp_path, text, capsys, name="config.yaml"):
    from edgeline.cli import main

    path = tmp_path / name
    path.write_text(text)
    code = main(["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("text, message", [
    ("steps:\n  a: {stage: ingest, source: x}\n  a: {stage: ingest, source: y}\n",
     "duplicate key 'a' at line 3 (first at line 2)"),
    ("seed: 1\nseed: 2\nsteps: {}\n", "duplicate key 'seed' at line 2 (first at line 1)"),
    ("steps:\n  a:\n    stage: train\n    epochs: 1\n    epochs: 9\n",
     "duplicate key 'epochs' at line 5"),
    (BILLION_LAUGHS, "aliases expand to"),
    ("steps: &s {a: {stage: train, inputs: *s}}\n", "an alias refers to the node that holds it"),
])
def test_duplicate_keys_and_alias_bombs_are_one_line_before_any_work(tmp_path, capsys, text,
                                                                      message):
    """PyYAML kept the last of two equal keys without a word, and expanded a 1.7 KB alias
    bomb into 770 MB of saved config, lineage and report."""
    code, err = _run_cli(tmp_path, text, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before the run store was opened


def test_merge_keys_may_be_overridden_and_aliases_in_bounds_are_fine(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("defaults: &defaults {epochs: 3, batch_size: 8}\n"
                    "other: {<<: *defaults, epochs: 5}\n")
    assert load_yaml(str(path))["other"] == {"epochs": 5, "batch_size": 8}


def test_a_config_path_that_is_a_folder_is_one_line(tmp_path, capsys):
    from edgeline.cli import main

    code = main(["run", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "config file is a folder" in err and "Traceback" not in err


def test_an_override_is_held_to_the_same_rules():
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        parse_override("x={a: 1, a: 2}")
    assert parse_override("x=a:b") == (["x"], "a:b")  # not YAML: the text itself


@pytest.mark.parametrize("step, message", [
    ("{stage: train, inputs: [images], model: mobilenet_v3}",
     "classifier: Received: model='mobilenet_v3'; unknown model. Known models: cnn,"),
    ("{stage: train, inputs: [images], model: mobilenet_v2, model_options: {widht: 0.5}}",
     "Received: widht=0.5; model 'mobilenet_v2' takes the options: width_multiplier"),
    ("{stage: compress, inputs: [images], "
     "steps: [{method: distill, distill: {student: rsenet20_cifar}}]}",
     "Received: model='rsenet20_cifar'"),
    ("{stage: rl, dqn: {q_network: resnet50}}", "q_network='resnet50'; it is not a Q-network"),
])
def test_a_model_a_later_step_names_is_checked_before_the_first_step_runs(tmp_path, capsys,
                                                                        step, message):
    """An unknown model (or option) was reported only when its step started, after the
    steps before it had run."""
    text = ("steps:\n  images: {stage: ingest, source: builtin:classification}\n"
            f"  classifier: {step}\n")
    code, err = _run_cli(tmp_path, text, capsys)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # the ingest step did not run
