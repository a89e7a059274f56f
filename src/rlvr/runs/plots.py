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

from rlvr.runs.rundir import atomic_write_bytes  # noqa: E402

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


def plot_curves(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> None:
    fig, axes = plt.subplots((len(PANELS) + 1) // 2, 2, figsize=(10, 3.25 * ((len(PANELS) + 1) // 2)))
    for ax, (label, patterns) in zip(axes.flat, PANELS, strict=True):
        drawn = False
        for key in [k for p in patterns for k in expand(rows, p)]:
            xs, ys = series(rows, key)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
                drawn = True
        ax.set_title(label)
        ax.set_xlabel("outer step")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged in this run", ha="center", va="center", transform=ax.transAxes)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
