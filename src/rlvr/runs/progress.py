"""A live progress line: a rich bar on a terminal, a plain line per evaluation otherwise."""

from __future__ import annotations

import sys
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeRemainingColumn

SHOWN = [("train/reward_mean", "reward"), ("eval/reward_mean", "eval"), ("eval/exact_match", "exact"),
         ("policy/kl", "kl"), ("policy/clip_frac", "clip")]


def describe(row: dict[str, Any], last_eval: dict[str, Any]) -> str:
    merged = {**last_eval, **row}
    return "  ".join(f"{label} {merged[key]:.3f}" for key, label in SHOWN if key in merged)


class Progress:
    def __init__(self, total: int, *, enabled: bool = True) -> None:
        self.total = total
        self.enabled = enabled
        self.interactive = enabled and sys.stdout.isatty()
        self.last_eval: dict[str, Any] = {}
        self._bar: RichProgress | None = None

    def __enter__(self) -> Progress:
        if self.interactive:
            self._bar = RichProgress(TextColumn("step"), MofNCompleteColumn(), BarColumn(),
                                     TimeRemainingColumn(), TextColumn("{task.description}"))
            self._bar.start()
            self._task = self._bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, row: dict[str, Any]) -> None:
        evaluated = any(k.startswith("eval/") for k in row)
        if evaluated:
            self.last_eval = {k: v for k, v in row.items() if k.startswith("eval/")}
        if self._bar is not None:
            self._bar.update(self._task, completed=step, description=describe(row, self.last_eval))
        elif self.enabled and (evaluated or step == self.total):
            print(f"step {step}/{self.total}  {describe(row, self.last_eval)}", flush=True)
