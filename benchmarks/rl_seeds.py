"""The rl stage's acceptance runs: CartPole-v1 with DQN and REINFORCE over five seeds.

    python -m benchmarks.rl_seeds                       # both algorithms, seeds 0 to 4
    python -m benchmarks.rl_seeds --algorithms dqn --seeds 0 1 2 --jobs 2

Each run is a shipped config (``configs/cartpole_dqn.yaml``, ``configs/cartpole_reinforce.yaml``)
with only the seed changed, as ``edgeline run CONFIG --set seed=N`` runs it: the rl step
through the stage's core, then the config's evaluate step on the published policy (its
``.tflite`` in LiteRT, greedy, 100 episodes seeded N, N + 1, ..., none of which the run saw).
A seed reaches the target when both hold:

- the run's first confirmed evaluation at or above ``target_return`` (the mean greedy return
  over its 20 evaluation and 100 confirmation episodes) comes within the budget, and so does
  the whole run (the exported policy is the best of all its evaluations): 50,000 environment
  steps for DQN, 100,000 for REINFORCE;
- the exported ``.tflite`` policy scores a mean return >= ``target_return`` (475) over the
  evaluate step's 100 episodes.

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
# algorithm -> (config file, its rl step, its evaluate step, the budget in environment steps)
CONFIGS = {
    "dqn": ("cartpole_dqn.yaml", "cartpole_dqn", "evaluate", 50_000),
    "reinforce": ("cartpole_reinforce.yaml", "cartpole_reinforce", "evaluate", 100_000),
}
LABELS = {"dqn": "DQN", "reinforce": "REINFORCE"}


def run_one(algorithm: str, seed: int) -> dict:
    """One seed of one algorithm, in this process: the config's rl step, then its evaluate
    step, each through its stage's core."""
    import shutil

    from edgeline.components.evaluate import returns as evaluate_returns
    from edgeline.components.evaluate.options import EvaluateOptions
    from edgeline.components.rl import core
    from edgeline.components.rl.options import RlOptions
    from edgeline.pipeline.config import load_pipeline_config

    config_file, rl_step, evaluate_step, budget = CONFIGS[algorithm]
    config = load_pipeline_config(
        str(REPO / "configs" / config_file),
        {"rl": RlOptions, "evaluate": EvaluateOptions},
        [f"seed={seed}"],
    )
    options = config.step(rl_step).options
    workdir = WORK / f"{algorithm}-seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    started = time.time()
    result = core.run(
        options,
        output_dir=workdir / "policy",
        checkpoint_dir=workdir / "checkpoint",
        seed=config.seed,
        deterministic=config.deterministic,
        log=lambda message: print(f"[{algorithm} seed {seed}] {message}", flush=True),
    )
    scored = evaluate_returns.evaluate_policy(
        options=config.step(evaluate_step).options,
        policy_dir=workdir / "policy",
        output_dir=workdir / "evaluate",
        seed=config.seed,
    ).metrics
    metrics = result["metrics"]
    target = options.target_return
    steps_to_target = metrics.get("env_steps_to_target")
    within_budget = steps_to_target is not None and metrics["env_steps"] <= budget
    return {
        "algorithm": algorithm,
        "seed": seed,
        "target_return": target,
        "budget_env_steps": budget,
        "reached": within_budget and scored["mean_return"] >= target,
        "env_steps_to_target": steps_to_target,
        "episodes_to_target": metrics.get("episodes_to_target"),
        "wall_seconds_to_target": metrics.get("wall_seconds_to_target"),
        "best_mean_return": metrics["best_mean_return"],
        "best_scored_episodes": metrics["best_scored_episodes"],
        "best_at_env_steps": metrics["best_at_env_steps"],
        "env_steps": metrics["env_steps"],
        "episodes": metrics["episodes"],
        "wall_seconds": metrics["wall_seconds"],
        "eval_seconds": metrics["eval_seconds"],
        "env_steps_per_second": metrics["env_steps_per_second"],
        "tflite_action_agreement": metrics.get("tflite_action_agreement"),
        "tflite_episodes": scored["episodes"],
        "tflite_mean_return": scored["mean_return"],
        "tflite_std_return": scored["std_return"],
        "tflite_min_return": scored["min_return"],
        "process_seconds": round(time.time() - started, 1),
        "learning_curve": result["properties"]["learning_curve"],
    }


def _count(value) -> str:
    return "-" if value is None else f"{value:,}"


def _markdown(results: list[dict]) -> str:
    lines = [
        "| agent | seed | reached | env steps to target | episodes to target | "
        "wall s to target | run: env steps, wall s | `.tflite`, 100 episodes: mean +- std "
        "(min) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in results:
        wall_to_target = row["wall_seconds_to_target"]
        lines.append(
            f"| {LABELS[row['algorithm']]} | {row['seed']} | "
            f"{'yes' if row['reached'] else 'no'} | {_count(row['env_steps_to_target'])} | "
            f"{_count(row['episodes_to_target'])} | "
            f"{'-' if wall_to_target is None else round(wall_to_target)} | "
            f"{row['env_steps']:,}, {round(row['wall_seconds'])} | "
            f"{row['tflite_mean_return']:.1f} +- {row['tflite_std_return']:.1f} "
            f"({row['tflite_min_return']:.0f}) |"
        )
    for algorithm in sorted({row["algorithm"] for row in results}):
        rows = [row for row in results if row["algorithm"] == algorithm]
        reached = sum(row["reached"] for row in rows)
        lines.append(
            f"\n{LABELS[algorithm]}: target {rows[0]['target_return']:g} reached within "
            f"{_count(rows[0]['budget_env_steps'])} env steps and held by the .tflite over "
            f"100 episodes for {reached} of {len(rows)} seeds"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--algorithms", nargs="+", choices=sorted(CONFIGS), default=["dqn", "reinforce"]
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
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
