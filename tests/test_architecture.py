"""The layering that import-linter cannot see: counts that must stay at zero.

import-linter (tests/test_packaging.py) checks who imports whom. These read the source with
``ast`` for what it does not check: which *modules* of another stage are imported, where LiteRT
interpreters and COCO evaluators are built, which file names the pipeline mentions, and how long
functions grow. Each failure names the file and line to fix.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# predict is a command over the stages, held to the same rule.
STAGES = ("ingest", "train", "rl", "evaluate", "compress", "export", "predict")
# The one place each kind of object is built (ARCHITECTURE.md, "Layers").
LITERT_RUNNER = REPO / "common" / "litert.py"
COCO_ENGINE_CALLS = {"COCO", "COCOeval", "COCOeval_faster", "COCOevalEvaluateAccumulate"}
MAX_CODE_LINES = 60
# A function may run longer when a comment in it says why, starting with this.
LONG_ON_PURPOSE = "# Long on purpose:"


def _sources(*folders: str) -> Iterator[tuple[Path, ast.Module]]:
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def _imported_modules(tree: ast.Module) -> Iterator[tuple[ast.AST, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node, node.module
            for alias in node.names:  # `from edgeline.components.train import core`
                yield node, f"{node.module}.{alias.name}"


def _called_name(call: ast.Call) -> str | None:
    func = call.func
    return func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else None)


def test_no_stage_imports_another_stages_modules():
    """Between stages only what a stage's ``__init__`` exports: ``from
    edgeline.components.train import run`` is public, ``edgeline.components.train.core`` is
    not."""
    found = []
    for path, tree in _sources("components"):
        own = path.relative_to(REPO / "components").parts[0]
        for node, module in _imported_modules(tree):
            parts = module.split(".")
            if parts[:2] != ["edgeline", "components"] or len(parts) < 4:
                continue
            stage, name = parts[2], parts[3]
            package_dir = REPO / "components" / stage
            is_module = (package_dir / f"{name}.py").is_file() or (package_dir / name).is_dir()
            if stage != own and stage in STAGES and is_module:
                found.append(f"{_where(path, node)} imports edgeline.components.{stage}.{name}")
    assert found == [], "\n".join(sorted(set(found)))


def test_litert_interpreters_are_built_by_the_shared_runner_only():
    found = [_where(path, node) for path, tree in _sources("components", "common", "pipeline")
             for node in ast.walk(tree)
             if isinstance(node, ast.Call) and _called_name(node) == "Interpreter"
             and path != LITERT_RUNNER]
    assert found == [], "LiteRT interpreters outside common/litert.py:\n" + "\n".join(found)


def test_coco_evaluators_are_built_by_the_shared_scoring_path_only():
    def allowed(path: Path) -> bool:
        relative = path.relative_to(REPO).as_posix()
        return relative.startswith("common/coco")

    found = [_where(path, node) for path, tree in _sources("components", "common", "pipeline")
             for node in ast.walk(tree)
             if isinstance(node, ast.Call) and _called_name(node) in COCO_ENGINE_CALLS
             and not allowed(path)]
    assert found == [], "COCO evaluators outside common/coco:\n" + "\n".join(found)


def test_the_pipeline_names_no_stage_file():
    """The report renders artifacts through their views; ``pipeline/`` names none of the
    files a stage writes (only ``artifact.json``, the pipeline's own)."""
    from edgeline.common import artifact_types

    stage_files = set(artifact_types.file_names()) - {"artifact.json"}
    assert {"export.json", "frontier.json", "history.json", "metrics.json"} <= stage_files
    found = [f"{_where(path, node)}: {node.value!r}" for path, tree in _sources("pipeline")
             for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and any(name in node.value if "." in name else name == node.value
                     for name in stage_files)]
    assert found == [], "\n".join(found)


def _code_lines(source: str, function: ast.FunctionDef) -> int:
    """Lines holding code (signature and body; not the docstring, comments or blank lines)."""
    lines = source.splitlines()[function.lineno - 1:function.end_lineno]
    docstring = range(0)
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        docstring = range(first.lineno - function.lineno, first.end_lineno - function.lineno + 1)
    counted = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER}
    text = "\n".join(lines) + "\n"
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip:
            counted.update(i for i in range(token.start[0] - 1, token.end[0])
                           if i not in docstring)
    return len(counted)


def test_functions_stay_short_or_say_why():
    found = []
    for folder in ("components", "pipeline", "common"):
        for path in sorted((REPO / folder).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for node in ast.walk(ast.parse(source)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                count = _code_lines(source, node)
                body = "\n".join(source.splitlines()[node.lineno - 1:node.end_lineno])
                if count > MAX_CODE_LINES and LONG_ON_PURPOSE not in body:
                    found.append(f"{_where(path, node)} {node.name}: {count} code lines")
    assert found == [], (f"over {MAX_CODE_LINES} code lines with no '{LONG_ON_PURPOSE}' "
                         "comment:\n" + "\n".join(found))
