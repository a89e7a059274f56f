"""PNG figures of the variance tools, written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from rlvr.runs.atomic import atomic_write_bytes  # noqa: E402


def save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def two_state_figure(variance_rows: list[dict[str, Any]], sweep: dict[str, Any],
                     curves: dict[str, Any], path: Path, *, title: str) -> None:
    """(a) tr Cov[g] per baseline at the initial policy, (b) tr Cov[g] as the policy moves,
    (c) share of the seeds at the global optimum during training."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    names = [r["baseline"] for r in variance_rows]
    values = [max(r["trace_cov"], 1e-6) for r in variance_rows]
    axes[0].bar(names, values, color=[f"C{i}" for i in range(len(names))])
    axes[0].set_yscale("log")
    axes[0].set_title("exact tr Cov[g] at the initial policy\n(bars at 1e-6 are exactly 0)")
    axes[0].tick_params(axis="x", rotation=30)
    for i, name in enumerate(sweep["traces"]):
        axes[1].plot(sweep["p"], [max(v, 1e-6) for v in sweep["traces"][name]], label=name, color=f"C{i}")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("pi(a1 | s) in both states")
    axes[1].set_title("exact tr Cov[g] along a path of policies")
    axes[1].legend(fontsize=8)
    for i, name in enumerate(curves["converged"]):
        axes[2].plot(curves["steps"], curves["converged"][name], label=name, color=f"C{i}")
    axes[2].set_xlabel("SGD step")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_title("share of seeds at the global optimum")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save(fig, path)


def task_figure(rows: list[dict[str, Any]], path: Path, *, title: str) -> None:
    """Per delta mode: tr Cov of one batch's gradient, cosine to the full-batch gradient, and (when
    the exact gradient is known) cosine of the mean estimate to it."""
    has_exact = any(r.get("cos_mean_exact") is not None for r in rows)
    fig, axes = plt.subplots(1, 3 if has_exact else 2, figsize=(13 if has_exact else 9, 4))
    names = [r["mode"] for r in rows]
    colors = [f"C{i}" for i in range(len(names))]
    axes[0].bar(names, [r["trace_cov"] for r in rows], color=colors)
    axes[0].set_yscale("log")
    axes[0].set_title("tr Cov of one batch's gradient")
    axes[1].bar(names, [r["cos_batch_full"] for r in rows], color=colors)
    axes[1].set_title("mean cosine: batch vs full-batch gradient")
    axes[1].set_ylim(min(0.0, min(r["cos_batch_full"] for r in rows)), 1.0)
    if has_exact:
        axes[2].bar(names, [r["cos_mean_exact"] for r in rows], color=colors)
        axes[2].set_ylim(min(0.9, min(r["cos_mean_exact"] for r in rows)), 1.0)
        axes[2].set_title("cosine: mean estimate vs exact grad J")
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    save(fig, path)
