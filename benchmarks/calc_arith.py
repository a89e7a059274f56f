"""calc-arith with and without the calculator tool, the same budget: accuracy and tool use.

    python benchmarks/calc_arith.py [--seed S] [--set key=value ...]
    python benchmarks/calc_arith.py --from-runs tools=RUN_DIR no-tools=RUN_DIR      # finished runs

Runs `rlvr train --config calc-arith` twice (sequentially, alone on the machine): with the tool
(`task.tools true`, the preset) and without it (`task.tools false`: the same SFT and RL budget, the
demonstrations answer directly). Records per run the held-out greedy success and tool-call share
after the SFT warm start and at the end, the sampled training episodes' success and tool-call share
per step, and the wall time. Writes benchmarks/results/calc-arith.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from rlvr.cli import resolve_config_path
from rlvr.config import load_config
from rlvr.runs.atomic import atomic_write_text
from rlvr.trainer import train

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"tools": "true", "no-tools": "false"}


def read_run(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    evals = [{"step": r["step"], "success": r["eval/success"], "tool_calls": r["eval/tool_calls"]}
             for r in rows if "eval/success" in r]
    train_rows = [{"step": r["step"], "success": r["env/success"], "tool_calls": r["env/tool_calls"]}
                  for r in rows if "env/success" in r]
    return {"run_dir": str(run_dir), "after_sft": evals[0], "final": evals[-1], "eval_curve": evals,
            "train_first": train_rows[0], "train_last": train_rows[-1], "train_curve": train_rows,
            "wall_minutes": summary["wall_seconds"] / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--from-runs", nargs="*", default=None, metavar="LABEL=RUN_DIR")
    parser.add_argument("--runs-root", default="runs/benchmarks/calc-arith")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calc-arith.json"))
    args = parser.parse_args()
    runs: dict[str, dict] = {}
    if args.from_runs is not None:
        for item in args.from_runs:
            label, run_dir = item.split("=", 1)
            runs[label] = read_run(Path(run_dir))
    else:
        for label, tools in VARIANTS.items():
            run_dir = Path(args.runs_root) / f"{label}-seed{args.seed}"
            overrides = {**dict(s.split("=", 1) for s in args.set), "task.tools": tools, "seed": args.seed,
                         "run_dir": str(run_dir)}
            before = os.getloadavg()[0]
            print(f"{label}: rlvr train --config calc-arith --task.tools {tools} -> {run_dir}", flush=True)
            t0 = time.perf_counter()
            train(load_config(resolve_config_path("calc-arith"), overrides), show_progress=True)
            runs[label] = {**read_run(run_dir), "load_before": before, "load_after": os.getloadavg()[0],
                           "wall_minutes": (time.perf_counter() - t0) / 60}
    for label, run in runs.items():
        print(f"{label}: after SFT {run['after_sft']}, final {run['final']}, "
              f"sampled {run['train_first']} -> {run['train_last']}")
    result = {"measured_by": "python benchmarks/calc_arith.py" + (" --from-runs ..." if args.from_runs else
                                                                   f" --seed {args.seed}"), "runs": runs}
    atomic_write_text(Path(args.out), json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
