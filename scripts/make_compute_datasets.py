"""Write the W2-style arithmetic datasets of examples/ (deterministic: the same files on every run).

    .venv/bin/python scripts/make_compute_datasets.py            # -> examples/compute-*.jsonl

The prompt of workloads.md's W2, "Compute 47+38. Reply with only the number.", with a and b uniform
in 10..99 ({"prompt", "answer", "a", "b", "op"} per line):
- ``compute-add.jsonl``: 3000 distinct additions (configs/smollm2-add.yaml trains on them; its
  held-out split is the dataset task's stable hash of the prompt);
- ``compute-sub.jsonl``, ``compute-mul.jsonl``: 200 subtractions (a >= b) and 200 multiplications,
  evaluated only: does RL on addition transfer to them, or damage them?
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Compute {a}{op}{b}. Reply with only the number."
OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def rows(op: str, count: int, seed: int) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out: dict[str, dict[str, object]] = {}
    while len(out) < count:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if op == "-" and a < b:
            a, b = b, a
        prompt = PROMPT.format(a=a, op=op, b=b)
        out.setdefault(prompt, {"prompt": prompt, "answer": str(OPS[op](a, b)), "a": a, "b": b, "op": op})
    return list(out.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "examples"), help="folder to write into")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    for name, op, count, seed in [("add", "+", 3000, 0), ("sub", "-", 200, 1), ("mul", "*", 200, 2)]:
        path = out / f"compute-{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows(op, count, seed)))
        print(f"wrote {path} ({count} rows)")


if __name__ == "__main__":
    main()
