"""``rlvr report RUN_DIR [RUN_DIR ...]``: a one-page, self-contained HTML report (rlvr.runs.report).

    rlvr report runs/quick                          # -> runs/quick/report.html
    rlvr report runs/a runs/b --out compare.html    # several runs overlaid
"""

from __future__ import annotations

from pathlib import Path

from rlvr.cli.parsing import Parser
from rlvr.errors import UserError
from rlvr.runs.report import build_report, load_run, run_labels
from rlvr.runs.rundir import atomic_write_text


def report_parser() -> Parser:
    parser = Parser(prog="rlvr report", description="A one-page HTML report of one or more run directories: "
                    "config, learning curves, held-out results, sample completions, timings.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories; several are overlaid")
    parser.add_argument("--out", help="output HTML file (default RUN_DIR/report.html; required for several runs)")
    return parser


def report_command(argv: list[str]) -> int:
    args = report_parser().parse_args(argv)
    paths = [Path(p) for p in args.run_dirs]
    if args.out is None and len(paths) > 1:
        raise UserError(f"report: {len(paths)} runs given; say where the comparison goes with --out FILE")
    out = Path(args.out) if args.out else paths[0] / "report.html"
    runs = [load_run(path, label) for path, label in zip(paths, run_labels(paths), strict=True)]
    try:
        atomic_write_text(out, build_report(runs))
    except OSError as exc:
        raise UserError(f"--out: cannot write {str(out)!r} ({exc.strerror})") from None
    print(f"report: {out}")
    return 0
