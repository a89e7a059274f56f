"""Learning curves as a PNG: reward (train and evaluation), exact match, KL, clip fraction, and the
variance diagnostics (half-batch gradient agreement, equal-reward groups, importance-ratio ESS)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlvr.runs.atomic import atomic_write_bytes  # noqa: E402

PANELS = [
    ("reward", ["train/reward_mean", "eval/reward_mean"]),
    ("exact match", ["eval/exact_match", "eval/pass@*"]),
    ("KL to reference", ["policy/kl"]),
    ("clip fraction", ["policy/clip_frac"]),
    ("gradient agreement (cosine of half-batch gradients)", ["diag/grad_cos_halves"]),
    ("share of groups with equal rewards; importance-ratio ESS", ["train/zero_std_frac", "diag/ratio_ess_frac"]),
]


def series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def expand(rows: Sequence[dict[str, Any]], pattern: str) -> list[str]:
    if not pattern.endswith("*"):
        return [pattern]
    keys = {k for r in rows for k in r if k.startswith(pattern[:-1])}
    return sorted(keys)


REPORT_PANELS = [
    ("reward (solid: held-out, dashed: train)", ["eval/reward_mean", "train/reward_mean"]),
    ("held-out exact match, pass@k", ["eval/exact_match", "eval/pass@*"]),
    ("KL to reference", ["policy/kl"]),
    ("clip fraction", ["policy/clip_frac"]),
    ("entropy (nats per token)", ["policy/entropy"]),
    ("rollout tokens / s", ["perf/tokens_per_s"]),
]
STYLES = ["-", "--", ":", "-."]


def figure_png(fig: Any) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def draw_panel(ax: Any, runs: dict[str, Sequence[dict[str, Any]]], patterns: list[str]) -> bool:
    """One panel: a colour per run (per key for a single run), a line style per key."""
    drawn = False
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, (label, rows) in enumerate(runs.items()):
        keys = [k for p in patterns for k in expand(rows, p)]
        for k, key in enumerate(keys):
            xs, ys = series(rows, key)
            if not xs:
                continue
            color = colors[(r if len(runs) > 1 else k) % len(colors)]
            name = f"{label}: {key}" if len(runs) > 1 else key
            ax.plot(xs, ys, STYLES[k % len(STYLES)], color=color,
                    marker="o" if len(xs) < 30 else None, markersize=3, label=name)
            drawn = True
    return drawn


def plot_runs(runs: dict[str, Sequence[dict[str, Any]]], panels: list[tuple[str, list[str]]] = REPORT_PANELS,
              *, title: str = "", columns: int = 2) -> bytes:
    """Learning curves of one or more runs ({label: metrics rows}), overlaid panel by panel -> PNG bytes."""
    nrows = -(-len(panels) // columns)
    fig, axes = plt.subplots(nrows, columns, figsize=(5 * columns, 3.25 * nrows), squeeze=False)
    for ax, (label, patterns) in zip(axes.flat, panels, strict=False):
        ax.set_title(label)
        ax.set_xlabel("outer step")
        ax.grid(alpha=0.3)
        if draw_panel(ax, runs, patterns):
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return figure_png(fig)


def plot_timings(totals: dict[str, dict[str, float]]) -> bytes:
    """Seconds spent per phase ({run: {phase: seconds}}) as stacked horizontal bars -> PNG bytes."""
    phases = list(dict.fromkeys(phase for t in totals.values() for phase in t))  # first-seen order
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(totals) + 1.6))
    labels = list(totals)
    left = [0.0] * len(labels)
    for phase in phases:
        widths = [totals[label].get(phase, 0.0) for label in labels]
        ax.barh(labels, widths, left=left, label=phase)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("seconds (summed over the run)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, ncol=len(phases), loc="upper center", bbox_to_anchor=(0.5, -0.35), frameon=False)
    return figure_png(fig)


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> None:
    atomic_write_bytes(path, plot_runs({"": rows}, PANELS, title=title))
