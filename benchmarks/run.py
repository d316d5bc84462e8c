"""`make bench`: every stage's side-by-side benchmark, collected into benchmarks/RESULTS.md.

Each ``benchmarks/bench_<part>.py`` exposes ``run(workdir: Path) -> list[dict]`` returning
rows with the keys of :data:`COLUMNS`. A figure and its baseline are measured in the same
script, on the same machine, one after the other, and compared as a ratio: timing targets
live here, never as assertions in tests.

    python -m benchmarks.run              # all parts
    python -m benchmarks.run ingest rl    # some parts
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import edgeline  # noqa: F401

HERE = Path(__file__).parent
PARTS = ("ingest", "train", "evaluate", "rl", "compress", "export")
MEASURED = "_measured"  # results.json: when each part was last measured, and how long it took
COLUMNS = ("part", "figure", "value", "baseline", "baseline_value", "ratio", "target", "met",
           "note")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return "" if value is None else str(value)


def write_results(rows: list[dict], path: Path, seconds: float,
                  measured: dict[str, dict] | None = None) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Produced by `make bench` (`python -m benchmarks.run [PART ...]`) on "
        f"{platform.machine()} with {__import__('os').cpu_count()} CPU cores, "
        f"Python {platform.python_version()}; the last invocation took {seconds / 60:.1f} "
        "minutes. Each figure is measured side by side with its baseline in the same script.",
        "",
    ]
    if measured:
        # Parts can be rerun alone (`python -m benchmarks.run rl`): say when each was measured.
        lines += ["Each part, when it finished and how long it took: " + "; ".join(
            f"{part} {info['finished']} UTC ({info['minutes']:.1f} min)"
            for part, info in measured.items()) + ".", ""]
    lines += [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + " |")
    path.write_text("\n".join(lines) + "\n")


def read_results(path: Path) -> dict:
    """The parts, rows and times of a RESULTS.md, as results.json holds them: a fresh clone
    has no results.json (benchmarks/_work is not committed), and rerunning one part there
    must keep the other parts' rows rather than write a RESULTS.md of that part alone."""
    previous: dict = {}
    if not path.exists():
        return previous
    prefix = "Each part, when it finished and how long it took: "
    for line in path.read_text().splitlines():
        if line.startswith(prefix):
            for entry in line[len(prefix):].rstrip(".").split("; "):
                part, day, clock, _, minutes, _ = entry.replace("(", "").split()
                previous.setdefault(MEASURED, {})[part] = {
                    "finished": f"{day} {clock}", "minutes": float(minutes)}
        cells = line[2:-2].split(" | ") if line.startswith("| ") else []
        if len(cells) == len(COLUMNS) and cells[0] in PARTS:  # a row (kept as its text)
            previous.setdefault(cells[0], []).append(dict(zip(COLUMNS, cells)))
    return previous


def main(argv: list[str]) -> int:
    parts = argv or list(PARTS)
    workdir = HERE / "_work"
    workdir.mkdir(exist_ok=True)
    results_json = workdir / "results.json"
    previous = (json.loads(results_json.read_text()) if results_json.exists()
                else read_results(HERE / "RESULTS.md"))
    started = time.time()
    failed = []
    for part in parts:
        name = f"benchmarks.bench_{part}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            print(f"[bench] {part}: no benchmark yet", file=sys.stderr)
            continue
        print(f"[bench] {part}: running", file=sys.stderr, flush=True)
        part_started = time.time()
        try:
            rows = module.run(workdir / part)
        except Exception:
            traceback.print_exc()
            failed.append(part)
            continue
        for row in rows:
            row.setdefault("part", part)
        previous[part] = rows
        previous.setdefault(MEASURED, {})[part] = {
            "finished": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "minutes": (time.time() - part_started) / 60,
        }
        results_json.write_text(json.dumps(previous, indent=2))
    rows = [row for part in PARTS for row in previous.get(part, [])]
    measured = previous.get(MEASURED, {})
    write_results(rows, HERE / "RESULTS.md", time.time() - started,
                  {part: measured[part] for part in PARTS if part in measured})
    print(f"[bench] wrote {HERE / 'RESULTS.md'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
