"""Regenerate docs/performance.md's tables from the benchmark results JSON (no hand-copied numbers).

    python scripts/perf_table.py                         # rewrite every generated table from its JSON
    python scripts/perf_table.py --check                 # exit 1 when the doc differs from what the JSON gives
    python scripts/perf_table.py --use w1=a.json,b.json  # point a table at other files, then rewrite

A generated table sits between two marker comments; the begin marker names its JSON files
(relative to benchmarks/results/, or absolute), so the doc says where each table comes from:

    <!-- perf:w1 begin: w1-2026-11-29.json -->
    ...generated...
    <!-- perf:w1 end -->

Tables (``RENDERERS``): ``w1`` (benchmarks/bench_w1.py: one or more files, merged by tool and beta;
the generation-alone line from the last file that has one), ``decode``
(benchmarks/decode_breakdown.py), ``w2`` (benchmarks/smollm2_add.py), ``tts``
(benchmarks/w1_time_to_solution.py), ``w2trl`` (benchmarks/w2_trl.py). Everything outside the markers
is left as it is. `make bench` (benchmarks/run_all.py) runs the benchmarks, then this script with
``--use`` naming the files it just wrote.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
RESULTS = ROOT / "benchmarks" / "results"
BLOCK = re.compile(r"<!-- perf:(?P<name>[\w-]+) begin: (?P<files>[^>]*?) -->\n(?P<body>.*?)<!-- perf:(?P=name) end -->",
                   re.S)
Sources = list[tuple[str, dict[str, Any]]]  # (file name as the marker gives it, its JSON)


class TableError(Exception):
    """A marker or a results file the tables cannot be made from (one line, naming it)."""


# ---------------------------------------------------------------- formatting
def num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.1f}"


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [row(header), "|" + "---|" * len(header), *(row(r) for r in rows)]


def provenance_line(name: str, result: dict[str, Any]) -> str:
    """Where one file's figures come from: commit, date, versions, machine, load."""
    p = result.get("provenance")
    if not p:
        known = [result["date"]] if result.get("date") else []
        known += [f"commit {result['commit']}"] if result.get("commit") else []
        load = (result.get("machine") or {}).get("load_avg")
        known += [f"1-minute load {load[0]:.2f} at the start"] if load else []
        return f"- `{name}`: no provenance block (run before benchmarks/provenance.py)" + "".join(f"; {k}" for k in known)
    commit = (p.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if p.get("dirty") else "")
    v = p.get("versions", {})
    libs = "".join(f", {k} {v[k]}" for k in ("torch", "transformers", "trl") if v.get(k))
    when = str(p.get("recorded_at", "")).replace("T", " ")
    machine = f"{p.get('cpu_model') or 'unknown CPU'}, {p.get('cpu_count')} cores"
    load = p.get("load")
    if load:
        after = "—" if load.get("load1_after") is None else f"{load['load1_after']:.2f}"
        state = "**busy at the start**" if load["busy"] else "quiet at the start"
        machine += f", 1-minute load {load['load1_before']:.2f} -> {after} ({state})"
    return f"- `{name}`: commit {commit}, {when}; python {v.get('python')}{libs}; {machine}"


# ---------------------------------------------------------------- W1: bench_w1.py
W1_HEADER = ["tool", "beta", "s/step median", "min", "max", "generation s", "training s", "completion tok/s",
             "peak RSS MB", "useful GFLOP/s", "reward @20", "reward @200"]
TOOL_NAMES = {"rlvr": "rlvr", "trl": "TRL", "rlvr-base": "rlvr (A/B base)"}


def merged_tools(sources: Sources) -> dict[str, dict[str, dict[str, Any]]]:
    """tool -> beta -> summary over every file (a later file's tool and beta replace an earlier one's)."""
    tools: dict[str, dict[str, dict[str, Any]]] = {}
    for _, result in sources:
        for tool, per_beta in result.get("tools", {}).items():
            tools.setdefault(tool, {}).update(per_beta)
    return tools


def w1_rows(tools: dict[str, dict[str, dict[str, Any]]]) -> list[list[str]]:
    betas = sorted({b for per in tools.values() for b in per}, key=float)
    with_imports = any(s.get("rss_after_imports_mb") is not None for per in tools.values() for s in per.values())
    rows = []
    for beta in betas:
        for tool in (t for t in TOOL_NAMES if beta in tools.get(t, {})):
            s = tools[tool][beta]
            median = num(s["step_median"], 3)
            rss = num(s["peak_rss_mb"], 0)
            if with_imports:
                rss += f" ({num(s.get('rss_after_imports_mb'), 0)})"
            rows.append([TOOL_NAMES[tool], f"{float(beta):g}", f"**{median}**" if tool == "rlvr" else median,
                         num(s["step_min"], 3), num(s["step_max"], 3), num(s["gen_median"], 3),
                         num(s["train_median"], 3), num(s["completion_tokens_per_s"], 0), rss,
                         num(s["achieved_gflops"], 1), num(s["reward_at_20"], 3), num(s["reward_at_200"], 3)])
    return rows


def ratio_line(tools: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    """TRL / rlvr step time per beta: the ratio of the medians, and the range of the per-seed ratios."""
    parts = []
    for beta in sorted(set(tools.get("trl", {})) & set(tools.get("rlvr", {})), key=float):
        trl, ours = tools["trl"][beta], tools["rlvr"][beta]
        part = f"{trl['step_median'] / ours['step_median']:.2f}x at beta {float(beta):g}"
        seeds = list(zip(trl.get("step_median_per_seed", []), ours.get("step_median_per_seed", []), strict=False))
        if len(seeds) > 1:
            per_seed = [t / r for t, r in seeds]
            part += f" (per seed {min(per_seed):.2f}-{max(per_seed):.2f}x)"
        parts.append(part)
    return f"TRL / rlvr step time, ratio of the medians: **{', '.join(parts)}**." if parts else None


def generation_line(sources: Sources) -> str | None:
    found = [(name, r["generation"]) for name, r in sources if "generation" in r]
    if not found:
        return None
    name, g = found[-1]
    line = (f"Generation alone (`{name}`): rlvr {g['rlvr']['tokens_per_s']:.0f} tokens/s, HF `generate` "
            f"{g['hf']['tokens_per_s']:.0f}: **{g['rlvr_over_hf']:.2f}x**")
    spread = [g[t].get("tokens_per_s_per_repeat") for t in ("rlvr", "hf")]
    if all(spread):
        line += (f" (per repeat: rlvr {spread[0]['min']:.0f}-{spread[0]['max']:.0f}, "
                 f"HF {spread[1]['min']:.0f}-{spread[1]['max']:.0f})")
    return line + "."


def render_w1(sources: Sources) -> str:
    if not any("tools" in r or "generation" in r for _, r in sources):
        raise KeyError("tools")
    first = next((r for _, r in sources if r.get("tools")), sources[0][1])
    runs = [f"`{name}`" for name, _ in sources]
    m = first.get("machine", {})
    head = (f"From {', '.join(runs)}: {first.get('steps')} steps x {first.get('seeds')} seeds, "
            f"{first.get('threads')} threads, A B A B; matmul 512x512 fp32 {num(m.get('fp32_gflops'), 0)} GFLOP/s, "
            f"bf16 {num(m.get('bf16_gflops'), 0)}. Medians and full ranges over every step but each run's first"
            + ("; peak RSS with the RSS right after the imports in brackets" if any(
                "rss_after_imports_mb" in s for per in merged_tools(sources).values() for s in per.values()) else "")
            + ":")
    tools = merged_tools(sources)
    lines = [head, ""]
    if tools:
        lines += [*table(W1_HEADER, w1_rows(tools)), ""]
    lines += [line for line in (ratio_line(tools), generation_line(sources)) if line]
    prompts = [r["prompt_lists"]["same_for_every_run"] for _, r in sources if "prompt_lists" in r]
    if prompts:
        lines.append(f"Same prompt list per seed for both tools: {'yes' if all(prompts) else '**no**'} "
                     f"(hashes in the JSON); rlvr's norm_eps {first['settings'].get('rlvr_norm_eps', '—')}.")
    lines += ["", *(provenance_line(name, r) for name, r in sources)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- decode_breakdown.py
def render_decode(sources: Sources) -> str:
    name, result = sources[-1]
    runs = result["results"]
    medians = "fused" in runs[0]
    steps = runs[0]["fused_split_s"]["decode_steps"]
    how = (f"median of {result.get('reps', runs[0]['fused'].get('n'))} repeats (full range in brackets)" if medians
           else "the fastest repeat (this file predates medians)")
    lines = [f"`{name}`: one W1 rollout of 128 rows, {how}:", ""]
    rows = []
    for r in runs:
        if medians:
            cells = [f"{ms(r[k]['median'])} ms ({ms(r[k]['min'])}-{ms(r[k]['max'])})"
                     for k in ("fused", "module_path", "hf_generate")]
            ratio, split = r["fused_over_hf_median"], r["fused_split_median_s"]
        else:
            cells = [f"{ms(r[k])} ms" for k in ("fused_s", "module_path_s", "hf_generate_s")]
            ratio, split = r["fused_over_hf"], r["fused_split_s"]
        rows.append([str(r["threads"]), *cells, f"{ratio:.2f}x",
                     f"{ms(split['prefill'])}, {ms(split['expand'])}, {ms(split['decode'])} ({split['mean_rows']:.0f}), "
                     f"{ms(split['rest'])} ms", f"{ms(r['decode_matmul_floor']['seconds'])} ms"])
    header = ["threads", "rlvr fused decoder", "rlvr module path", "HF `generate`", "fused / HF",
              f"fused: prefill, build, {steps} decode steps (mean rows), rest", "matmul floor of the decode steps"]
    lines += [*table(header, rows), "", provenance_line(name, result)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- W2: smollm2_add.py
def render_w2(sources: Sources) -> str:
    name, result = sources[-1]
    rows = []
    for run in result["runs"]:
        before, after, step = run["before"]["add"], run["after"]["add"], run["s_per_step"]
        rows.append([str(run["seed"]), str(run["outer_steps"]),
                     f"{before['eval/exact_match']:.2f} -> **{after['eval/exact_match']:.2f}**",
                     f"{after['eval/pass@1']:.2f}", f"{run['train_minutes']:.1f} ({run['eval_minutes']:.1f})",
                     f"{step['median']:.2f} ({step['min']:.2f}-{step['max']:.2f})",
                     f"{run['load_avg_before']:.2f} -> {run['load_avg_after']:.2f}"])
    header = ["seed", "steps", "held-out greedy accuracy, base -> trained", "sampled pass@1 after",
              "train minutes (of it evaluating)", "s/step median (range)", "1-minute load before -> after"]
    lines = [f"`{name}` (`{result['preset']}`, {result.get('eval_prompts', 64)} held-out addition prompts):", "",
             *table(header, rows), "", provenance_line(name, result)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- W1 time to solution: w1_time_to_solution.py
def minutes_cell(entry: dict[str, Any]) -> str:
    """Median training minutes (steps) over seeds, and how many seeds reached the threshold."""
    if entry["median_minutes"] is None:
        return f"not reached ({entry['reached']}/{entry['seeds']} seeds)"
    return f"{entry['median_minutes']:.2f} ({entry['median_steps']:g} steps; {entry['reached']}/{entry['seeds']} seeds)"


def render_tts(sources: Sources) -> str:
    name, result = sources[-1]
    settings = result["settings"]
    rows = []
    for beta, per_threshold in result["time_to_solution"].items():
        for threshold, entry in per_threshold.items():
            ratio = entry.get("trl_over_rlvr_minutes")
            rows.append([f"{float(beta):g}", threshold, minutes_cell(entry["rlvr"]),
                         minutes_cell(entry["trl"]) if "trl" in entry else "—",
                         "—" if ratio is None else f"**{ratio:.2f}x**"])
    header = ["beta", "held-out reward", "rlvr: training minutes (steps)", "TRL: training minutes (steps)",
              "TRL / rlvr minutes"]
    lines = [f"`{name}`: up to {settings['steps']} steps per run, seeds {', '.join(map(str, settings['seeds']))}, held-out greedy reward "
             f"on {result['held_out']['count']} prompts every {settings['eval_every']} steps (evaluation time "
             "not counted); medians over seeds, a seed that never reaches counting as infinitely late:", "",
             *table(header, rows), "", provenance_line(name, result)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- W2 side by side: w2_trl.py
def render_w2trl(sources: Sources) -> str:
    name, result = sources[-1]
    rows = []
    for tool in (t for t in TOOL_NAMES if t in result["tools"]):
        s = result["tools"][tool]
        step, curve = s["step_s"], s["eval_curve"]
        tts = s["time_to_solution"]
        rows.append([TOOL_NAMES[tool], str(s["steps_run"]),
                     f"{num(step['median'], 2)} ({num(step['min'], 2)}-{num(step['max'], 2)})",
                     num(s["gen_s"]["median"], 2), num(s["train_s"]["median"], 2),
                     f"{num(s['peak_rss_mb'], 0)} ({num(s.get('rss_after_imports_mb'), 0)})",
                     f"{curve[0]['accuracy']:.2f} -> {curve[-1]['accuracy']:.2f}",
                     *("not reached" if tts.get(str(t)) is None else f"{tts[str(t)]:.1f}" for t in result["thresholds"]), f"{s['train_minutes']:.1f}"])
    header = ["tool", "steps", "s/step median (range)", "generation s", "training s",
              "peak RSS MB (after imports)", "held-out greedy accuracy, step 0 -> last",
              *(f"minutes to {t:g}" for t in result["thresholds"]), "training minutes"]
    ratio = result.get("trl_over_rlvr_step_time")
    same = result["prompt_lists"]["same_for_every_tool"]
    lines = [f"`{name}`: seed {result['seed']}, {result['eval_prompts']} held-out prompts evaluated greedily every "
             f"{result['eval_every']} steps (not counted in the step times), each tool stopped at "
             f"{result['stop_at']:g} or after {result['max_steps']} steps:", "", *table(header, rows), "",
             f"TRL / rlvr step time, ratio of the medians: **{num(ratio, 2)}x**. Same prompts for both tools: "
             f"{'yes' if same else '**no**'}.", "", provenance_line(name, result)]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Sources], str]] = {"w1": render_w1, "decode": render_decode, "w2": render_w2,
                                                  "tts": render_tts, "w2trl": render_w2trl}


# ---------------------------------------------------------------- the doc
def load_sources(files: list[str], results: Path) -> Sources:
    sources = []
    for name in files:
        path = Path(name) if Path(name).is_absolute() else results / name
        if not path.is_file():
            raise TableError(f"no results file {name!r} (looked for {path})")
        sources.append((name, json.loads(path.read_text())))
    return sources


def render_doc(text: str, results: Path, use: dict[str, list[str]] | None = None) -> str:
    """The doc with every generated block rendered from its files (``use``: other files for a block)."""
    use = dict(use or {})
    names = [m["name"] for m in BLOCK.finditer(text)]
    unknown = sorted({*names, *use} - set(RENDERERS))
    if unknown:
        raise TableError(f"unknown table {unknown[0]!r}: the tables are {', '.join(RENDERERS)}")
    if set(use) - set(names):
        raise TableError(f"--use {sorted(set(use) - set(names))[0]}: the doc has no such block")
    if text.count("<!-- perf:") != 2 * len(names):
        raise TableError("a perf marker without its pair (each block: '<!-- perf:NAME begin: FILES -->' ... "
                         "'<!-- perf:NAME end -->')")

    def block(m: re.Match[str]) -> str:
        files = use.pop(m["name"], None) or m["files"].split()
        try:
            body = RENDERERS[m["name"]](load_sources(files, results))
        except (KeyError, IndexError, TypeError) as exc:
            raise TableError(f"{m['name']}: {' '.join(files)} lacks {exc} (not that benchmark's results?)") from exc
        return f"<!-- perf:{m['name']} begin: {' '.join(files)} -->\n{body}<!-- perf:{m['name']} end -->"
    return BLOCK.sub(block, text)


def marker_name(path: str, results: Path) -> str:
    """A file as a marker names it: relative to the results folder when it is inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(results.resolve())) if resolved.is_relative_to(results.resolve()) else str(resolved)


def parse_use(items: list[str], results: Path) -> dict[str, list[str]]:
    use = {}
    for item in items:
        name, sep, files = item.partition("=")
        if not sep or not files:
            raise TableError(f"--use {item!r}: expected NAME=FILE[,FILE...]")
        use[name] = [marker_name(f, results) for f in files.split(",")]
    return use


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the doc differs from its JSON; change nothing")
    parser.add_argument("--use", action="append", default=[], metavar="NAME=FILE[,FILE...]",
                        help="render table NAME from these files (and name them in its marker)")
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the markers' relative file names are")
    args = parser.parse_args(argv)
    text = args.doc.read_text()
    try:
        new = render_doc(text, args.results, parse_use(args.use, args.results))
    except TableError as exc:
        print(f"perf_table: {args.doc}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new == text:
            return 0
        diff = difflib.unified_diff(text.splitlines(), new.splitlines(), str(args.doc), "from the JSON", lineterm="")
        print("\n".join(list(diff)[:60]), file=sys.stderr)
        print(f"perf_table: {args.doc} differs from its JSON: run python scripts/perf_table.py", file=sys.stderr)
        return 1
    if new != text:
        args.doc.write_text(new)
        print(f"perf_table: rewrote the tables of {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
