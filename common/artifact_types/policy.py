"""The Policy artifact (rl stage): a trained tf-agents policy, saved and exported.

    saved_policy/     the PolicySaver SavedModel
    policy.tflite     the network alone, for LiteRT
    policy.json       what the policy is: algorithm, environment, observation, actions, files
    history.json      every evaluation (``evaluations``: env_steps, episodes, mean_return),
                      the training log (``training``: env_steps, loss, train_average_return),
                      when the target return was first reached (``target``) and the options
    tensorboard/      the training summaries

Its ``artifact.json`` properties hold ``learning_curve`` (rows of ``[env_steps, episodes,
mean_return]``) and its metrics the run's summary (``best_mean_return``, ``env_steps``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# A Policy's history file has the Model's name and reader (one of each); what it holds is the
# rl stage's evaluations and training log rather than Keras' per-epoch columns.
from edgeline.common.artifact_types.model import HISTORY_FILE as HISTORY_FILE
from edgeline.common.artifact_types.model import read_history
from edgeline.common.artifact_types.tflite_model import tflite_files
from edgeline.pipeline import report
from edgeline.pipeline.artifacts import Artifact

SAVED_POLICY_DIR = "saved_policy"
TFLITE_FILE = "policy.tflite"
DESCRIPTION_FILE = "policy.json"
TENSORBOARD_DIR = "tensorboard"


def learning_curve_png(curve: Sequence[Sequence[float]], training: Sequence[Mapping[str, Any]],
                       target_return: float | None, title: str) -> bytes | None:
    """Mean greedy return against environment steps (``learning_curve`` rows are
    ``[env_steps, episodes, mean_return]``), and the training loss beside it when logged."""
    if not curve:
        return None
    losses = [(row["env_steps"], row["loss"]) for row in training
              if isinstance(row.get("loss"), int | float)]
    figure, axes_list = report.new_figure(2 if losses else 1)
    axes = axes_list[0]
    axes.plot([row[0] for row in curve], [row[2] for row in curve], marker="o", markersize=3,
              label="mean greedy return")
    train_returns = [(row["env_steps"], row["train_average_return"]) for row in training
                     if isinstance(row.get("train_average_return"), int | float)]
    if train_returns:
        axes.plot(*zip(*train_returns), alpha=0.6, label="training episodes' return")
    if target_return is not None:
        axes.axhline(target_return, linestyle="--", color="tab:red", linewidth=1,
                     label=f"target {target_return:g}")
    axes.set_xlabel("environment steps")
    axes.set_ylabel("return")
    axes.set_title("learning curve")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    if losses:
        axes = axes_list[1]
        axes.plot(*zip(*losses), color="tab:orange")
        axes.set_xlabel("environment steps")
        axes.set_title("training loss")
        axes.set_yscale("log" if min(v for _, v in losses) > 0 else "linear")
        axes.grid(alpha=0.3)
    figure.suptitle(title, fontsize=10)
    return report.png_bytes(figure)


class Policy:
    type_name = "Policy"

    def headline(self, artifact: Artifact) -> dict[str, Any]:
        return {"best mean return": artifact.metrics.get("best_mean_return"),
                "env steps": artifact.metrics.get("env_steps")}

    def render(self, entry: report.StepArtifact) -> list[report.Block]:
        blocks: list[report.Block] = []
        properties = entry.artifact.properties
        history = read_history(entry.directory)
        curve = properties.get("learning_curve") or [
            [row["env_steps"], row["episodes"], row["mean_return"]]
            for row in history.get("evaluations", []) if "mean_return" in row]
        target = (history.get("target") or {}).get("target_return")
        if target is None:
            target = (history.get("options") or {}).get("target_return")
        what = " on ".join(str(v) for v in (properties.get("algorithm"),
                                              history.get("environment")) if v)
        png = learning_curve_png(curve, history.get("training") or [], target,
                                 f"{entry.step}: {what}" if what else entry.step)
        if png:
            blocks.append(report.Heading(3, "Learning curve"))
            blocks.append(report.Figure(report.slug(f"{entry.step}_learning_curve.png"), png,
                                 f"{entry.step}: mean greedy return at each evaluation"))
            rows = [tuple(report.format_value(v) for v in row[:3]) for row in curve]
            blocks.append(report.cut_table(
                report.Table(("env steps", "episodes", "mean greedy return"), rows)))
        if entry.artifact.metrics:
            blocks.append(report.Heading(3, "Summary"))
            blocks.append(report.key_value_table(entry.artifact.metrics))
        return blocks

    def exported_files(self, entry: report.StepArtifact) -> list[report.ExportedFile]:
        return tflite_files(entry)
