"""``rlvr variance``: the notes' variance analysis as a command.

    rlvr variance two-state [--out DIR] [--lr X --group-size G --steps N --seeds K]
    rlvr variance task --config FILE [--checkpoint FILE.safetensors] [--repeats R] [--out DIR]
                       [--section.key VALUE ...]
Tables go to stdout, figures (PNG) to --out.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlvr.errors import UserError
from rlvr.runs.rundir import atomic_write_text

USAGE = """usage: rlvr variance {two-state,task} ...

  two-state   the notes' two-state example: exact variance under each baseline, 100 training runs
  task        gradient variance of a task/policy under each delta mode, from repeated rollouts"""


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def two_state_parser() -> argparse.ArgumentParser:
    from rlvr.analysis.two_state import TrainSetup
    from rlvr.cli import Parser

    d = TrainSetup()
    parser = Parser(prog="rlvr variance two-state", description="The notes' two-state example.")
    parser.add_argument("--out", default="variance-two-state", help="folder for the PNG and results.json")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate [default {d.lr}]")
    parser.add_argument("--group-size", type=int, default=d.group_size, help=f"G per state per step [default {d.group_size}]")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"SGD steps per run [default {d.steps}]")
    parser.add_argument("--seeds", type=int, default=d.seeds, help=f"training runs per baseline [default {d.seeds}]")
    parser.add_argument("--constant", type=float, default=d.constant, help=f"the constant baseline [default {d.constant}]")
    return parser


def cmd_two_state(argv: list[str]) -> int:
    import torch

    from rlvr.analysis import two_state as ts
    from rlvr.analysis.figures import two_state_figure

    args = two_state_parser().parse_args(argv)
    if args.group_size < 2 or args.steps < 1 or args.seeds < 1 or args.lr <= 0:
        raise UserError("--group-size must be >= 2, --steps and --seeds >= 1, --lr > 0 "
                        f"(got {args.group_size}, {args.steps}, {args.seeds}, {args.lr})")
    torch.set_num_threads(1)
    setup = ts.TrainSetup(lr=args.lr, group_size=args.group_size, steps=args.steps, seeds=args.seeds,
                          constant=args.constant)
    out = Path(args.out)
    table = ts.notes_table()
    print("The notes' two-state example: raw rewards vs rewards minus the per-state mean b(s)\n")
    print(format_table(table, ["state", "action", "reward", "baseline", "centered"]))
    raw, centered = ts.spread(ts.REWARDS), ts.spread(torch.tensor([r["centered"] for r in table]))
    print(f"\nraw:      range {raw['min']:g}..{raw['max']:g}, variance {raw['variance']:.3g}"
          f"\ncentered: range {centered['min']:g}..{centered['max']:g}, variance {centered['variance']:.3g}"
          f"  ({raw['variance'] / centered['variance']:.1f}x smaller)\n")
    theta = torch.zeros(2, 2, dtype=torch.double)
    variance = ts.variance_table(theta, group_size=setup.group_size, constant=setup.constant)
    skewed = torch.tensor([[1.0, 4.0], [1.0, 4.0]], dtype=torch.double).log()    # pi(a1 | s) = 0.2
    for row, other in zip(variance, ts.variance_table(skewed, group_size=setup.group_size, constant=setup.constant),
                          strict=True):
        row["trace_cov_at_0.2"] = other["trace_cov"]
    print(f"Exact moments of g = 1/S sum_s 1/G sum_i (R - b) grad log pi, G={setup.group_size}, at the uniform "
          f"softmax policy\n(trace_cov_at_0.2: at pi(a1 | s) = 0.2 in both states; constant baseline c={setup.constant:g};"
          f" mean_over_true = <E g, grad J> / |grad J|^2)\n")
    print(format_table(variance, ["baseline", "trace_cov", "trace_cov_at_0.2", "bias_norm", "mean_over_true"]))
    print(f"\nTraining: SGD lr {setup.lr:g}, {setup.steps} steps, G={setup.group_size} per state, uniform start, "
          f"{setup.seeds} seeds; converged = pi(optimal action | s) > {setup.success:g} in both states\n")
    outcomes, curves = ts.training_study(setup)
    print(format_table(outcomes, ["baseline", "converged", "s1_stuck_on_a2", "s2_stuck_on_a1"]))
    sweep = ts.variance_sweep(setup)
    two_state_figure(variance, sweep, curves, out / "two_state.png",
                     title=f"two-state example: G={setup.group_size}, SGD lr {setup.lr:g}, {setup.seeds} seeds")
    results = {"setup": vars(setup), "notes_table": table, "variance": variance, "training": outcomes}
    atomic_write_text(out / "results.json", json.dumps(results, indent=1))
    print(f"\nfigure: {out / 'two_state.png'}\nresults: {out / 'results.json'}")
    return 0


def cmd_variance(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    commands = {"two-state": cmd_two_state, "task": cmd_task}
    if sub not in commands:
        raise UserError(f"unknown variance command {sub!r}; valid: {', '.join(commands)}")
    return commands[sub](rest)


def cmd_task(argv: list[str]) -> int:
    from rlvr.analysis.task_variance import run_task_variance

    return run_task_variance(argv)
