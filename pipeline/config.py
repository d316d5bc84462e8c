"""Strict configs: one YAML file per pipeline, validated before any work starts.

A pipeline file looks like::

    # Run: edgeline run configs/demo.yaml
    name: demo
    seed: 1234
    deterministic: true
    runs_dir: runs
    steps:
      images:                  # a step name, unique in the file
        stage: ingest          # which stage runs it
        inputs: []             # earlier steps whose artifacts it reads
        format: imagenet       # ...the stage's own options
        source: builtin:classification

Every stage declares its options as a dataclass; :func:`parse_dataclass` checks the YAML
against it (unknown key, wrong type, missing path) and raises :class:`ConfigError` with one
line naming the key and the value received, as Keras does for its constructor arguments.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from edgeline.pipeline.errors import ConfigError

RESERVED_STEP_KEYS = ("stage", "inputs")

_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ExistingPath(str):
    """A path that must exist when the config is loaded (relative to the config's folder
    or the working directory)."""


class OutputPath(str):
    """A path the stage will write; its parent need not exist yet."""


@dataclasses.dataclass(frozen=True)
class StepConfig:
    name: str
    stage: str
    inputs: tuple[str, ...]
    options: Any  # the stage's options dataclass instance
    raw: dict  # the options as given, fully resolved (defaults filled in)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    name: str
    seed: int
    deterministic: bool
    runs_dir: str
    steps: tuple[StepConfig, ...]
    source_path: str | None = None

    def step(self, name: str) -> StepConfig:
        for step in self.steps:
            if step.name == name:
                return step
        raise ConfigError(
            f"unknown step '{name}'; the config has: {', '.join(s.name for s in self.steps)}"
        )

    def resolved(self) -> dict:
        """The whole config with every default filled in, as saved with each run."""
        return {
            "name": self.name,
            "seed": self.seed,
            "deterministic": self.deterministic,
            "runs_dir": self.runs_dir,
            "steps": {
                s.name: {"stage": s.stage, "inputs": list(s.inputs), **s.raw} for s in self.steps
            },
        }


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            tp.__name__, tp.__name__
        )
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, base_dir: Path | None) -> Any:
    """Check ``value`` against the annotation ``tp``; return it normalized."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _coerce_union(value, args, where, base_dir)
    if origin is Literal:
        return _coerce_choice(value, args, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, received {value!r}")
        item_tp = args[0] if args else Any
        return tuple(_coerce(v, item_tp, f"{where}[{i}]", base_dir) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, received {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{where}.{k}", base_dir) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, where, base_dir)
    return _coerce_scalar(value, tp, where, base_dir)


def _coerce_union(value: Any, args: tuple, where: str, base_dir: Path | None) -> Any:
    """``X | Y | None``: None where allowed, else the first arm that takes ``value``."""
    if value is None and type(None) in args:
        return None
    arms = [arg for arg in args if arg is not type(None)]
    if len(arms) == 1:  # Optional[X]: X's own message is the clearest
        return _coerce(value, arms[0], where, base_dir)
    for arg in arms:
        try:
            return _coerce(value, arg, where, base_dir)
        except ConfigError:
            continue
    allowed = " or ".join(_type_name(a) for a in args if a is not type(None))
    raise ConfigError(f"{where}: expected {allowed}, received {value!r}")


def _coerce_choice(value: Any, choices: tuple, where: str) -> Any:
    """``Literal[...]``: one of ``choices``."""
    if isinstance(value, bool) and value not in choices:
        # YAML 1.1 reads a bare off/on/yes/no as a boolean: take the spelling the choices
        # allow (`mixed_precision: off`).
        spellings = ("on", "yes", "true") if value else ("off", "no", "false")
        value = next((word for word in spellings if word in choices), value)
    if value not in choices:
        listed = ", ".join(repr(a) for a in choices)
        raise ConfigError(f"{where}: expected one of {listed}, received {value!r}")
    return value


def _coerce_scalar(value: Any, tp: Any, where: str, base_dir: Path | None) -> Any:
    """A boolean, integer, number, path or string."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected a boolean, received {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, received {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            # PyYAML follows YAML 1.1, where 1e-5 (no dot) is a string; YAML 1.2 and people
            # read it as a number (`weight_decay: 1e-5`, `--set x.float_tolerance=1e-12`).
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, received {value!r}")
        return float(value)
    if tp is ExistingPath:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path, received {value!r}")
        resolved = resolve_path(value, base_dir)
        if not os.path.exists(resolved):
            raise ConfigError(f"{where}: path does not exist: {value!r}")
        return ExistingPath(resolved)
    if tp in (str, OutputPath):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, received {value!r}")
        return tp(value)
    raise TypeError(f"{where}: unsupported annotation {tp!r}")  # a bug in a stage's dataclass


def resolve_path(value: str, base_dir: Path | None) -> str:
    """Paths in a config are relative to the working directory; ``../shared`` style paths
    that only exist relative to the config's folder are accepted too."""
    path = Path(os.path.expanduser(value))
    if path.is_absolute() or path.exists() or base_dir is None:
        return str(path)
    beside_config = base_dir / path
    return str(beside_config) if beside_config.exists() else str(path)


def parse_dataclass(cls: type, data: Any, where: str, base_dir: Path | None = None) -> Any:
    """Build ``cls`` from a mapping, refusing unknown keys and wrong types.

    ``where`` is the dotted key path used in error messages (``train.epochs``).
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, received {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"{where}.{key}: unknown key (received {data[key]!r}); "
            f"known keys: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}", base_dir)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing")
    try:
        instance = cls(**kwargs)
    except (ValueError, TypeError) as err:
        # __post_init__ validation of a value's range ("Received: epochs=-1").
        raise ConfigError(f"{where}: {err}") from None
    return instance


def to_plain(obj: Any) -> Any:
    """A dataclass (or nesting of them) as plain JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=3`` -> (["train", "epochs"], 3). Values are read as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, received {text!r}")
    key, _, value = text.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set expects a dotted key such as train.epochs, received {text!r}")
    if not value.strip():
        return key.split("."), ""
    try:
        yaml.safe_load(value)
    except yaml.YAMLError:  # not YAML: the text itself (a path with a colon, say)
        return key.split("."), value
    return key.split("."), parse_yaml_text(value, f"--set {key}", _MAX_OVERRIDE_NODES)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = json.loads(json.dumps(data))  # a deep copy of plain YAML data
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] not in ("name", "seed", "deterministic", "runs_dir"):
            steps = data.setdefault("steps", {})
            if keys[0] not in steps:
                raise ConfigError(
                    f"--set {text}: no step named '{keys[0]}'; steps: {', '.join(steps)}"
                )
            node = steps
        else:
            node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: '{key}' is not a mapping")
            node = child
        node[keys[-1]] = value
    return data


# A config expands to at most this many YAML nodes once its aliases are followed. The largest
# shipped config has a few hundred; a "billion laughs" file of 1.7 KB expanded to 770 MB of
# saved config, lineage and report before this bound.
MAX_EXPANDED_NODES = 100_000
# The same for an override value (--set), which is one small value.
_MAX_OVERRIDE_NODES = 10_000


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping: YAML says keys are
    unique, and PyYAML would silently keep the last one (a second step of the same name, or a
    repeated option, would replace the first without a word)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # <<: *defaults; its keys may be
                continue  # overridden by the mapping's own, as YAML's merge key allows
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(Exception):
    def __init__(self, key, line: int, first_line: int):
        super().__init__(key)
        self.key, self.line, self.first_line = key, line, first_line


class _RecursiveAlias(Exception):
    pass


def _expanded_size(node, memo: dict) -> int:
    """How many nodes ``node`` stands for once every alias is replaced by what it names
    (aliases share their node object, so the count is memoized on identity)."""
    known = memo.get(id(node))
    if known is not None:
        if known < 0:  # still being sized: the node contains an alias of itself
            raise _RecursiveAlias
        return known
    memo[id(node)] = -1
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(key, memo) + _expanded_size(value, memo)
                    for key, value in node.value)
    memo[id(node)] = size
    return size


def parse_yaml_text(text: str, where: str, max_nodes: int = MAX_EXPANDED_NODES) -> Any:
    """YAML text -> Python data, strictly: no duplicate keys, a bounded alias expansion, and
    one :class:`ConfigError` line naming ``where`` and the line for anything wrong."""
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            try:
                size = _expanded_size(node, {})
            except _RecursiveAlias:
                raise ConfigError(f"{where}: an alias refers to the node that holds it (a "
                                  "config cannot contain itself)") from None
            if size > max_nodes:
                raise ConfigError(
                    f"{where}: its aliases expand to {size:,} YAML nodes, more than the "
                    f"{max_nodes:,} a config may hold (received a recursive or nested alias)"
                )
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except _DuplicateKey as dup:
        raise ConfigError(
            f"{where}: duplicate key {dup.key!r} at line {dup.line} (first at line "
            f"{dup.first_line}); each key, and each step name, may appear once"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{at}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None


def load_yaml(path: str) -> dict:
    if not os.path.exists(path):
        raise ConfigError(f"config file does not exist: {path!r}")
    if os.path.isdir(path):
        raise ConfigError(f"config file is a folder: {path!r} (expected a YAML file, such as "
                          "configs/demo.yaml)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise ConfigError(f"config file cannot be read: {path!r} ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    data = parse_yaml_text(text, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, received {data!r}")
    return data


def load_pipeline_config(
    path: str | None,
    stage_options: Mapping[str, type],
    overrides: list[str] = (),
    data: dict | None = None,
) -> PipelineConfig:
    """Load and validate a pipeline file.

    ``stage_options`` maps each known stage name to its options dataclass (the CLI passes
    the registered stages in).
    """
    if data is None:
        data = load_yaml(path)
    data = apply_overrides(data, list(overrides))
    base_dir = Path(path).resolve().parent if path else None
    top_keys = {"name", "seed", "deterministic", "runs_dir", "steps"}
    unknown = sorted(set(data) - top_keys)
    if unknown:
        raise ConfigError(
            f"{unknown[0]}: unknown key (received {data[unknown[0]]!r}); "
            f"known keys: {', '.join(sorted(top_keys))}"
        )
    name = _coerce(data.get("name", Path(path).stem if path else "pipeline"), str, "name", None)
    seed = _coerce(data.get("seed", 0), int, "seed", None)
    deterministic = _coerce(data.get("deterministic", False), bool, "deterministic", None)
    runs_dir = _coerce(data.get("runs_dir", "runs"), str, "runs_dir", None)
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, Mapping) or not raw_steps:
        raise ConfigError(f"steps: expected a mapping of step names, received {raw_steps!r}")
    steps: list[StepConfig] = []
    for step_name, body in raw_steps.items():
        where = str(step_name)
        if not isinstance(body, Mapping):
            raise ConfigError(f"{where}: expected a mapping, received {body!r}")
        stage = body.get("stage")
        if stage not in stage_options:
            raise ConfigError(
                f"{where}.stage: unknown stage {stage!r}; known stages: "
                f"{', '.join(sorted(stage_options))}"
            )
        inputs = _coerce(body.get("inputs", []), tuple[str, ...], f"{where}.inputs", None)
        earlier = [s.name for s in steps]
        for inp in inputs:
            if inp not in earlier:
                raise ConfigError(
                    f"{where}.inputs: {inp!r} is not an earlier step; earlier steps: "
                    f"{', '.join(earlier) or '(none)'}"
                )
        raw = {k: v for k, v in body.items() if k not in RESERVED_STEP_KEYS}
        options = parse_dataclass(stage_options[stage], raw, where, base_dir)
        steps.append(StepConfig(where, stage, inputs, options, to_plain(options)))
    return PipelineConfig(
        name=name,
        seed=seed,
        deterministic=deterministic,
        runs_dir=runs_dir,
        steps=tuple(steps),
        source_path=str(path) if path else None,
    )
