"""The rl stage's acceptance runs: CartPole-v1 with DQN and REINFORCE over three seeds.

    python -m benchmarks.rl_seeds                       # both algorithms, seeds 0 1 2
    python -m benchmarks.rl_seeds --algorithms dqn --seeds 0 1 2 --jobs 2

Each run is the shipped config (``configs/cartpole_dqn.yaml``, ``configs/cartpole_reinforce.yaml``)
with only the seed changed, through the stage's core, stopped at the first evaluation that
reaches the target (the learning curve up to there is kept in the JSON):

- DQN: mean greedy return >= 475 over 20 seeded evaluation episodes within 50,000 environment
  steps, for at least 2 of 3 seeds;
- REINFORCE: mean greedy return >= 400 within 1,000 episodes, for at least 2 of 3 seeds.

Results go to ``benchmarks/_work/rl_seeds.json`` and are printed as a Markdown table (the
figures the README quotes). Runs are deterministic: a seed's curve is the same on every rerun
on the same machine and TensorFlow build; the wall times depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import edgeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work" / "rl_seeds"
CONFIGS = {
    "dqn": ("cartpole_dqn.yaml", "cartpole_dqn", 475.0),
    "reinforce": ("cartpole_reinforce.yaml", "cartpole_reinforce", 400.0),
}


def run_one(algorithm: str, seed: int) -> dict:
    """One seed of one algorithm, in this process."""
    import shutil

    from edgeline.components.evaluate.options import EvaluateOptions
    from edgeline.components.rl import core
    from edgeline.components.rl.options import RlOptions
    from edgeline.pipeline.config import load_pipeline_config

    config_file, step, target = CONFIGS[algorithm]
    config = load_pipeline_config(
        str(REPO / "configs" / config_file),
        {"rl": RlOptions, "evaluate": EvaluateOptions},
        [f"seed={seed}", f"{step}.target_return={target}", f"{step}.stop_at_target=true"],
    )
    (options,) = [s.options for s in config.steps if s.stage == "rl"]
    workdir = WORK / f"{algorithm}-seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.time()
    result = core.run(
        options,
        output_dir=workdir / "out",
        checkpoint_dir=workdir / "checkpoint",
        seed=config.seed,
        deterministic=config.deterministic,
        log=lambda message: print(f"[{algorithm} seed {seed}] {message}", flush=True),
    )
    metrics = result["metrics"]
    budget_ok = (
        metrics.get("env_steps_to_target", float("inf")) <= options.max_env_steps
        if options.max_env_steps is not None
        else metrics.get("episodes_to_target", float("inf")) <= options.max_episodes
    )
    return {
        "algorithm": algorithm,
        "seed": seed,
        "target_return": target,
        "reached": "env_steps_to_target" in metrics and budget_ok,
        "env_steps_to_target": metrics.get("env_steps_to_target"),
        "episodes_to_target": metrics.get("episodes_to_target"),
        "wall_seconds_to_target": metrics.get("wall_seconds_to_target"),
        "best_mean_return": metrics["best_mean_return"],
        "env_steps": metrics["env_steps"],
        "episodes": metrics["episodes"],
        "wall_seconds": metrics["wall_seconds"],
        "env_steps_per_second": metrics["env_steps_per_second"],
        "tflite_action_agreement": metrics.get("tflite_action_agreement"),
        "process_seconds": round(time.time() - started, 1),
        "learning_curve": result["properties"]["learning_curve"],
    }


def _markdown(results: list[dict]) -> str:
    lines = [
        "| algorithm | seed | reached | env steps to target | episodes to target | "
        "wall s to target | best mean return | env steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['algorithm']} (>= {row['target_return']:g}) | {row['seed']} | "
            f"{'yes' if row['reached'] else 'no'} | {row['env_steps_to_target'] or '-'} | "
            f"{row['episodes_to_target'] or '-'} | {row['wall_seconds_to_target'] or '-'} | "
            f"{row['best_mean_return']:.1f} | {row['env_steps_per_second']} |"
        )
    for algorithm in sorted({row["algorithm"] for row in results}):
        rows = [row for row in results if row["algorithm"] == algorithm]
        reached = sum(row["reached"] for row in rows)
        lines.append(f"\n{algorithm}: target reached for {reached} of {len(rows)} seeds")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--algorithms", nargs="+", choices=sorted(CONFIGS), default=["dqn", "reinforce"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="runs side by side (subprocesses)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    if args.one:
        [algorithm], [seed] = args.algorithms, args.seeds
        row = run_one(algorithm, seed)
        (WORK / f"{algorithm}-seed{seed}.json").write_text(json.dumps(row, indent=2))
        return 0
    runs = [(algorithm, seed) for algorithm in args.algorithms for seed in args.seeds]
    running: list[subprocess.Popen] = []
    for algorithm, seed in runs:
        (WORK / f"{algorithm}-seed{seed}.json").unlink(missing_ok=True)
    for algorithm, seed in runs:
        while len(running) >= args.jobs:
            running = [process for process in running if process.poll() is None]
            time.sleep(1)
        command = [sys.executable, "-m", "benchmarks.rl_seeds", "--one"]
        command += ["--algorithms", algorithm, "--seeds", str(seed)]
        running.append(subprocess.Popen(command, cwd=REPO))
    for process in running:
        process.wait()
    missing = [run for run in runs if not (WORK / f"{run[0]}-seed{run[1]}.json").is_file()]
    for algorithm, seed in missing:
        print(f"{algorithm} seed {seed}: the run failed (no result)", file=sys.stderr)
    # The table holds every finished run, from this call and earlier ones.
    results = [json.loads(path.read_text()) for path in WORK.glob("*-seed*.json")]
    results.sort(key=lambda row: (row["algorithm"], row["seed"]))
    (REPO / "benchmarks" / "_work" / "rl_seeds.json").write_text(json.dumps(results, indent=2))
    print(_markdown(results))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
