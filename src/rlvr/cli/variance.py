"""``rlvr variance``: the notes' variance analysis as a command (the analysis: ``rlvr.analysis``).

    rlvr variance two-state [--out DIR] [--lr X --group-size G --steps N --seeds K]
    rlvr variance task --config FILE [--checkpoint FILE.safetensors] [--repeats R] [--out DIR]
                       [--section.key VALUE ...]
Tables go to stdout, figures (PNG) to --out.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlvr.analysis.tables import format_table
from rlvr.cli.parsing import Parser, parse_overrides, resolve_config_path
from rlvr.errors import UserError
from rlvr.runs.rundir import atomic_write_text

USAGE = """usage: rlvr variance {two-state,task} ...

  two-state   the notes' two-state example: exact variance under each baseline, 100 training runs
  task        gradient variance of a task/policy under each delta mode, from repeated rollouts"""


def two_state_parser() -> Parser:
    from rlvr.analysis.two_state import TrainSetup

    d = TrainSetup()
    parser = Parser(prog="rlvr variance two-state", description="The notes' two-state example.")
    parser.add_argument("--out", default="variance-two-state", help="folder for the PNG and results.json")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"SGD learning rate [default {d.lr}]")
    parser.add_argument("--group-size", type=int, default=d.group_size, help=f"G per state per step [default {d.group_size}]")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"SGD steps per run [default {d.steps}]")
    parser.add_argument("--seeds", type=int, default=d.seeds, help=f"training runs per baseline [default {d.seeds}]")
    parser.add_argument("--constant", type=float, default=d.constant, help=f"the constant baseline [default {d.constant}]")
    return parser


def two_state_command(argv: list[str]) -> int:
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


def variance_command(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    commands = {"two-state": two_state_command, "task": task_command}
    if sub not in commands:
        raise UserError(f"unknown variance command {sub!r}; valid: {', '.join(commands)}")
    return commands[sub](rest)


def task_parser() -> Parser:
    parser = Parser(prog="rlvr variance task", description="Gradient variance under each delta mode, "
                    "from repeated rollouts at a fixed policy and batch of prompts. Any rlvr train config "
                    "field can be given as --section.key VALUE.")
    parser.add_argument("--config", help="YAML config or preset name (as rlvr train)")
    parser.add_argument("--checkpoint", help="a safetensors state dict of the policy (default: the initial policy)")
    parser.add_argument("--repeats", type=int, default=200, help="R independent rollouts of the batch [default 200]")
    parser.add_argument("--modes", help="comma-separated delta modes (default: all, plus optimal-exact for toy)")
    parser.add_argument("--out", default="variance-task", help="folder for the PNG and results.json")
    return parser


def task_command(argv: list[str]) -> int:
    import torch

    from rlvr.analysis.figures import task_figure
    from rlvr.analysis.task_variance import measure
    from rlvr.config import load_config

    args, rest = task_parser().parse_known_args(argv)
    if args.repeats < 2:
        raise UserError(f"--repeats: {args.repeats} must be >= 2")
    cfg = load_config(resolve_config_path(args.config) if args.config else None, parse_overrides(rest))
    torch.set_num_threads(cfg.train.threads)

    def show_progress(done: int) -> None:
        if done % max(1, args.repeats // 10) == 0:
            print(f"\rrollouts {done}/{args.repeats}", end="", flush=True)

    found = measure(cfg, repeats=args.repeats, modes=args.modes.split(",") if args.modes else None,
                    checkpoint=args.checkpoint, progress=show_progress)
    print()
    rows, prompts = found.rows, found.prompts
    print(f"{cfg.name}: B={len(prompts)} prompts x G={cfg.train.group_size}, {args.repeats} rollouts, "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'initial policy'}"
          f"{', exact grad J by enumeration' if found.exact else ''}\n")
    print(format_table(rows, ["mode", "trace_cov", "cos_batch_full", "cos_mean_exact", "norm_ratio",
                              "rel_bias", "rel_mc_noise"]))
    out = Path(args.out)
    task_figure(rows, out / "task_variance.png", title=f"{cfg.name}: B={len(prompts)}, G={cfg.train.group_size}, "
                f"{args.repeats} rollouts")
    atomic_write_text(out / "results.json", json.dumps({"config": cfg.name, "repeats": args.repeats,
                                                        "prompts": [list(p) for p in prompts], "rows": rows}, indent=1))
    print(f"\nfigure: {out / 'task_variance.png'}\nresults: {out / 'results.json'}")
    return 0
