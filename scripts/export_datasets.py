"""Write the example datasets of examples/ (deterministic: the same files on every run).

    .venv/bin/python scripts/export_datasets.py            # -> examples/*.jsonl
    .venv/bin/python scripts/export_datasets.py --out DIR  # somewhere else

- ``addition.jsonl``: 1000 two-digit addition word problems, ``{"prompt", "answer", "a", "b"}``
  (``answer`` is ``a + b`` as text), generated here with a seeded ``random.Random``.
- ``chain_sum.jsonl``: 500 questions of reasoning-gym's ``chain_sum`` (seed 42), ``{"prompt",
  "answer", "num_terms", "num_digits"}``; needs the rg extra (``pip install 'rlvr[rg]'``), skipped
  with a note without it.

Train on either with ``task.name: dataset`` (configs/add-dataset.yaml; docs/tasks.md).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivan", "Jo"]
ITEMS = ["apples", "stamps", "marbles", "books", "shells", "cards", "coins", "pens"]
TEMPLATES = [
    "{name} has {a} {items} and gets {b} more. How many {items} does {name} have now?",
    "{name} had {a} {items}. A friend gave {name} {b} {items}. How many {items} does {name} have?",
    "There are {a} {items} in one box and {b} in another. How many {items} are there in all?",
    "{name} collected {a} {items} on Monday and {b} on Tuesday. How many {items} in total?",
]


def addition_rows(count: int = 1000, seed: int = 0) -> list[dict[str, object]]:
    """Distinct word problems a + b with 10 <= a, b <= 99."""
    rng = random.Random(seed)
    rows: dict[str, dict[str, object]] = {}
    while len(rows) < count:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        prompt = rng.choice(TEMPLATES).format(name=rng.choice(NAMES), items=rng.choice(ITEMS), a=a, b=b)
        rows.setdefault(prompt, {"prompt": prompt, "answer": str(a + b), "a": a, "b": b})
    return list(rows.values())


def chain_sum_rows(count: int = 500, seed: int = 42) -> list[dict[str, object]] | None:
    try:
        import reasoning_gym
    except ImportError:
        return None
    data = reasoning_gym.create_dataset("chain_sum", size=count, seed=seed)
    rows = []
    for i in range(count):
        entry = data[i]
        meta = entry["metadata"]
        rows.append({"prompt": entry["question"], "answer": str(entry["answer"]),
                     "num_terms": meta["num_terms"], "num_digits": meta["num_digits"]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "examples"), help="output folder (default: examples/)")
    out = Path(parser.parse_args().out)
    write_jsonl(out / "addition.jsonl", addition_rows())
    chain = chain_sum_rows()
    if chain is None:
        print("chain_sum.jsonl: skipped (reasoning-gym is not installed: pip install 'rlvr[rg]')")
    else:
        write_jsonl(out / "chain_sum.jsonl", chain)


if __name__ == "__main__":
    main()
