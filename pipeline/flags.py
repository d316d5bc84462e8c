"""Command-line flags derived from a stage's options dataclass.

Each option's type, default and choices are written once, in its dataclass field, and its
help once, in the ``Attributes:`` section of the dataclass's docstring (Google style, as Keras
documents its constructor arguments). Why the docstring and not ``field(metadata=...)``: it is
where a reader of the options module already looks, ``help(ExportOptions)`` and IDEs show
it, and config files (``configs/*.yaml``) and flags then share one description.

    add_option_flags(parser, ExportOptions, {"per_channel_weights": Flag("--per-tensor-weights",
                                                                      negate=True)})
    options = options_from_flags(args, ExportOptions, "export")

A flag given on the command line is passed to :func:`~.config.parse_dataclass`, which checks
it as it checks a pipeline file; a flag not given leaves the dataclass default in place
(argparse stores nothing for it), so no default is repeated here. Nested options take dotted
paths (``detection.score_threshold``); each path gets ``--`` and its last part with dashes
unless a :class:`Flag` names it otherwise, which keeps the flags users already type.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, Union

# Where a parser keeps the options its flags set (their dests are the options' paths).
_OPTION_PATHS = "option_flags"
_ATTRIBUTE = re.compile(r"^(\s*)(\w+): (.*)$")
_METAVARS = {int: "N", float: "X"}
_RANGE_ERROR = re.compile(r"^[\w.\[\]]+: (Received: .*)$", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one option appears on the command line, where the derived form will not do."""

    name: str | None = None  # e.g. "--form" for model_form (default: "--" + the field name)
    negate: bool = False  # a boolean the flag turns off (--no-plots sets plots: false)
    metavar: str | None = None
    note: str | None = None  # words for the command line only, after the docstring's


def attribute_help(options_type: type) -> dict[str, str]:
    """The ``Attributes:`` section of ``options_type``'s docstring, one text per field."""
    doc = inspect.cleandoc(options_type.__doc__ or "")
    found: dict[str, str] = {}
    lines = iter(doc.splitlines())
    for line in lines:
        if line.strip() == "Attributes:":
            break
    current, indent = None, None
    for line in lines:
        if not line.strip():
            if found:
                break  # the section ends at its first blank line
            continue
        match = _ATTRIBUTE.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent, current = len(match.group(1)), match.group(2)
            found[current] = match.group(3).strip()
        elif current is not None:
            found[current] += " " + line.strip()
    return {name: text.replace("``", "") for name, text in found.items()}


def _fields(options_type: type, prefix: str = "") -> Iterator[tuple[str, Any, Any, str]]:
    """(dotted path, type annotation, default, help) of every leaf option."""
    hints = typing.get_type_hints(options_type)
    helps = attribute_help(options_type)
    for field in dataclasses.fields(options_type):
        annotation = hints[field.name]
        default = (field.default_factory() if field.default_factory is not dataclasses.MISSING
                   else field.default)
        if dataclasses.is_dataclass(annotation):
            yield from _fields(annotation, f"{prefix}{field.name}.")
            continue
        yield f"{prefix}{field.name}", annotation, default, helps.get(field.name, "")


def _argument_type(annotation: Any) -> tuple[Any, tuple | None]:
    """(the argparse ``type``, the choices or None) of a scalar annotation."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        [annotation] = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        return type(choices[0]), choices
    if annotation in (int, float, str):
        return annotation, None
    raise TypeError(f"no command-line flag for an option of type {annotation!r}; exclude it "
                    "or give it a flag by hand")


def _default_text(default: Any) -> str:
    """A default as a config file spells it (true, [100], unset for None)."""
    import json

    if default is None:
        return "unset"
    if isinstance(default, bool | tuple | list):
        return json.dumps(list(default) if isinstance(default, tuple) else default)
    return str(default)


def add_option_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    options_type: type,
    flags: Mapping[str, Flag | str] | None = None,
    *,
    exclude: Iterable[str] = (),
) -> None:
    """Add a flag for every option of ``options_type`` (dotted paths for nested ones) except
    ``exclude``; ``flags`` renames some (a string is a :class:`Flag` name)."""
    flags = {path: Flag(flag) if isinstance(flag, str) else flag
             for path, flag in (flags or {}).items()}
    excluded = set(exclude)
    paths = []
    for path, annotation, default, text in _fields(options_type):
        if path in excluded or path.split(".")[0] in excluded:
            continue
        paths.append(path)
        flag = flags.get(path, Flag())
        name = flag.name or "--" + path.rsplit(".", 1)[-1].replace("_", "-")
        words = " ".join(part for part in (text, flag.note) if part)
        dest = path
        if annotation is bool:
            if flag.negate:
                name = flag.name or "--no-" + name[2:]
                words = f"sets {path} to false ({words})"
            parser.add_argument(name, dest=dest, action="store_const", const=not flag.negate,
                                default=argparse.SUPPRESS, help=words.replace("%", "%%"))
            continue
        kind, choices = _argument_type(annotation)
        shown = f"{{{','.join(map(str, choices))}}}; " if choices else ""
        metavar = flag.metavar or (None if choices else _METAVARS.get(kind, "TEXT"))
        parser.add_argument(name, dest=dest, type=kind, choices=choices, metavar=metavar,
                            default=argparse.SUPPRESS,
                            help=f"{words} ({shown}default: {_default_text(default)})"
                            .replace("%", "%%"))
    parser.set_defaults(**{_OPTION_PATHS: tuple(paths)})


def given_options(args: argparse.Namespace) -> dict:
    """The options given as flags, as the nested mapping a pipeline step would hold."""
    data: dict = {}
    for path in getattr(args, _OPTION_PATHS, ()):
        if not hasattr(args, path):
            continue  # not given: the dataclass default stands
        value = getattr(args, path)
        *parents, leaf = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return data


def options_from_flags(args: argparse.Namespace, options_type: type, where: str,
                       base: Mapping[str, Any] | None = None) -> Any:
    """``options_type`` from ``base`` (options not given as flags) and the flags given,
    checked as a pipeline step's options are (one line naming the option on a bad value)."""
    from edgeline.pipeline.config import parse_dataclass
    from edgeline.pipeline.errors import ConfigError

    data = _merge(dict(base or {}), given_options(args))
    try:
        return parse_dataclass(options_type, data, where)
    except ConfigError as err:
        # A range check names its option already ("Received: episodes=0; ..."), and on the
        # command line there is no config key path to point at.
        found = _RANGE_ERROR.match(str(err))
        if found is None:
            raise
        raise ConfigError(found.group(1)) from None


def _merge(base: dict, given: dict) -> dict:
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def options_reference(options_type: type, *, exclude: Iterable[str] = (),
                      width: int = 92) -> str:
    """The options of ``options_type`` as text for a command's epilog (a config's keys, with
    their choices and defaults), written from the same dataclass as its flags."""
    lines = []
    excluded = set(exclude)
    for path, annotation, default, _ in _fields(options_type):
        if path in excluded or path.split(".")[0] in excluded:
            continue
        try:
            _, choices = (None, None) if annotation is bool else _argument_type(annotation)
        except TypeError:
            choices = None
        what = " | ".join(map(str, choices)) if choices else ""
        lines.append(f"  {path:<40} {what + ' ' if what else ''}(default: "
                     f"{_default_text(default)})"[:width])
    return "\n".join(lines)
