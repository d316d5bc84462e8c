"""Flags derived from an options dataclass: type, default, choices and help written once."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pytest

from edgeline.pipeline.errors import ConfigError
from edgeline.pipeline.flags import (
    Flag,
    add_option_flags,
    attribute_help,
    options_from_flags,
    options_reference,
)


@dataclasses.dataclass(frozen=True)
class Inner:
    """Attributes:
      threshold: drop below it.
    """

    threshold: float = 0.5


@dataclasses.dataclass(frozen=True)
class Options:
    """What a toy stage does.

    Attributes:
      mode: ``fast`` or ``slow``; the second line of its
        help continues here.
      count: how many.
      limit: at most this many (unset: no limit).
      plots: write the plots.
      inner: nested options.

    Not an attribute: text after the section.
    """

    mode: Literal["fast", "slow"] = "fast"
    count: int = 3
    limit: int | None = None
    plots: bool = True
    inner: Inner = dataclasses.field(default_factory=Inner)

    def __post_init__(self):
        if self.count < 1:
            raise ValueError(f"Received: count={self.count}; count must be >= 1")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy")
    add_option_flags(parser, Options, {"plots": Flag("--no-plots", negate=True),
                                       "count": "--how-many"})
    return parser


def test_help_comes_from_the_attributes_section():
    assert attribute_help(Options) == {
        "mode": "fast or slow; the second line of its help continues here.",
        "count": "how many.", "limit": "at most this many (unset: no limit).",
        "plots": "write the plots.", "inner": "nested options."}


def test_flags_not_given_leave_the_dataclass_defaults():
    assert options_from_flags(_parser().parse_args([]), Options, "toy") == Options()


def test_flags_set_their_options_with_types_choices_and_dotted_paths():
    args = _parser().parse_args(["--mode", "slow", "--how-many", "7", "--limit", "2",
                                 "--no-plots", "--threshold", "0.25"])
    assert options_from_flags(args, Options, "toy") == Options(
        mode="slow", count=7, limit=2, plots=False, inner=Inner(threshold=0.25))
    with pytest.raises(SystemExit):
        _parser().parse_args(["--mode", "medium"])  # a choice of the Literal only


def test_a_base_mapping_fills_what_no_flag_gave():
    args = _parser().parse_args(["--how-many", "5"])
    assert options_from_flags(args, Options, "toy", base={"count": 2, "limit": 9}) == Options(
        count=5, limit=9)


def test_a_range_error_names_the_option_as_the_dataclass_does():
    args = _parser().parse_args(["--how-many", "0"])
    with pytest.raises(ConfigError) as error:
        options_from_flags(args, Options, "toy")
    assert str(error.value) == "Received: count=0; count must be >= 1"


def test_help_shows_the_docstring_the_choices_and_the_default():
    text = " ".join(_parser().format_help().split())
    assert "--mode {fast,slow} fast or slow; the second line of its help continues here." in text
    assert "({fast,slow}; default: fast)" in text
    assert "--how-many N how many. (default: 3)" in text
    assert "--no-plots sets plots to false (write the plots.)" in text
    assert "--threshold X drop below it. (default: 0.5)" in text


def test_the_options_reference_lists_keys_choices_and_defaults():
    lines = options_reference(Options, exclude=("count",)).splitlines()
    assert [line.split()[0] for line in lines] == ["mode", "limit", "plots", "inner.threshold"]
    assert "fast | slow (default: fast)" in lines[0] and "(default: true)" in lines[2]


@pytest.mark.parametrize("command", [["export", "tflite"], ["evaluate"], ["ingest", "imagenet"],
                                     ["ingest", "coco"]])
def test_every_flag_of_the_stage_commands_is_explained(command):
    """Derived or not, each flag of a stage command says what it does in --help."""
    from edgeline.cli import build_parser

    parser = build_parser()
    for name in command:
        parser = next(a for a in parser._actions
                      if isinstance(a, argparse._SubParsersAction)).choices[name]
    for action in parser._actions:
        assert action.help and action.help.strip(), action.option_strings or action.dest


def test_the_existing_flag_names_still_parse():
    """The flags the README, the notebooks and the tests type."""
    from edgeline.cli import build_parser

    parser = build_parser()
    args = parser.parse_args([
        "export", "tflite", "M", "--output", "o", "--quantize", "int8", "--io-type", "int8",
        "--include-preprocessing", "--per-tensor-weights", "--source", "keras",
        "--representative-size", "8", "--representative-split", "train", "--parity-split",
        "validation", "--parity-size", "8", "--float-tolerance", "0.1",
        "--float-map-tolerance", "0.1", "--max-metric-drop", "0.1",
        "--max-relative-metric-drop", "0.1", "--max-detections", "5", "--latency-runs", "2",
        "--latency-warmup", "1", "--no-latency", "--no-parity-check", "--seed", "1"])
    from edgeline.components.export.cli import _options

    options = _options(args)
    assert (options.quantize, options.per_channel_weights, options.measure_latency,
            options.check_parity, options.max_detections) == ("int8", False, False, False, 5)
    args = parser.parse_args([
        "evaluate", "M", "E", "--output", "o", "--split", "train", "--form", "tflite",
        "--batch-size", "4", "--num-threads", "2", "--max-images", "9", "--no-plots",
        "--score-threshold", "0.1", "--nms", "soft", "--iou-threshold", "0.4",
        "--soft-nms-sigma", "0.3", "--max-detections", "2000", "--episodes", "3",
        "--seed", "4"])
    from edgeline.components.evaluate.cli import _options as evaluate_options

    options = evaluate_options(args)
    assert (options.model_form, options.plots, options.episode_seed) == ("tflite", False, 4)
    assert options.detection.nms == "soft" and options.detection.pre_nms_top_k == 2000
