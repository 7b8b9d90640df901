"""The demo's results: the printed table, workdir/report.md, and workdir/curves.png (matplotlib)."""

from __future__ import annotations

import json
import os

import numpy as np

from vtjax.eval.report import markdown_table

HEADERS = ["model", "test accuracy %", "format %", "answered %", "grounding mIoU", "R@0.5"]


def read_metrics(train_workdir: str) -> list[dict]:
    """The interval means a trainer appended to ``train_workdir/metrics.jsonl`` (empty when absent)."""
    path = os.path.join(train_workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def results_rows(chance: float, evals: dict[str, dict]) -> list[list]:
    """Table rows: chance, then one per evaluated stage (``score_predictions`` results by label)."""
    nan = float("nan")
    rows = [["chance (1 / options)", chance, nan, nan, nan, nan]]
    for label, m in evals.items():
        g = m.get("grounding") or {}
        rows.append([label, m["accuracy"], m["format_rate"], m["answered_rate"], g.get("mIoU", nan),
                     g.get("R@0.5", nan)])
    return rows


def reward_change(grpo_metrics: list[dict], key: str = "reward_mean") -> tuple[float, float]:
    """Mean training reward of the first and the last third of the GRPO log intervals."""
    values = [m[key] for m in grpo_metrics if key in m]
    if not values:
        return float("nan"), float("nan")
    third = max(1, len(values) // 3)
    return float(np.mean(values[:third])), float(np.mean(values[-third:]))


def plot_curves(path: str, sft_metrics: list[dict], grpo_metrics: list[dict], evals: dict[str, dict],
                chance: float) -> str:
    """SFT loss, GRPO reward / rollout accuracy, and test accuracy per stage, in one PNG."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    ax = axes[0]
    ax.plot([m["step"] for m in sft_metrics], [m["loss"] for m in sft_metrics], color="tab:blue")
    ax.set(title="SFT: training loss", xlabel="step", ylabel="cross-entropy")
    ax = axes[1]
    steps = [m["step"] for m in grpo_metrics]
    for key, label, colour in (("reward_mean", "mean reward", "tab:green"),
                               ("accuracy", "rollout accuracy", "tab:orange"),
                               ("format_rate", "rollout format rate", "tab:purple")):
        if grpo_metrics and key in grpo_metrics[0]:
            ax.plot(steps, [m[key] for m in grpo_metrics], label=label, color=colour)
    ax.set(title="GRPO: rollouts (temperature sampling)", xlabel="step")
    ax.legend(loc="best")
    ax = axes[2]
    labels = ["chance", *evals]
    values = [chance, *(m["accuracy"] for m in evals.values())]
    ax.bar(labels, values, color=["tab:gray", "tab:blue", "tab:green"][: len(values)])
    for i, v in enumerate(values):
        ax.text(i, v + 1, f"{v:.1f}", ha="center")
    ax.set(title="held-out test accuracy (greedy)", ylabel="%", ylim=(0, 100))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(path: str, *, table: str, facts: dict, reward: tuple[float, float], png: str | None) -> str:
    """workdir/report.md: the table, what was trained, the reward change and the curves."""
    lines = ["# vtjax demo: a tiny Qwen2.5-VL learns to think with synthetic videos", "", table, ""]
    lines += [f"- {k}: {v}" for k, v in facts.items()]
    lines += [f"- GRPO mean training reward: {reward[0]:.3f} (first third of steps) -> {reward[1]:.3f} (last third)",
              "", "TensorBoard: `tensorboard --logdir <workdir>` (sft/tb, grpo/tb)."]
    if png:
        lines += ["", f"![reward and accuracy curves]({os.path.basename(png)})"]
    text = "\n".join(lines) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def table_markdown(chance: float, evals: dict[str, dict]) -> str:
    return markdown_table(HEADERS, results_rows(chance, evals))
