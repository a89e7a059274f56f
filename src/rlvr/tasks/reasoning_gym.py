"""``--task rg:NAME``: any procedural dataset of reasoning-gym (optional extra ``rg``).

Prompts are the dataset's questions (``RG_POOL`` entries generated with a fixed seed; the held-out
split is the usual hash split of the question text). The answer is scored by the dataset's own
``score_answer`` (a float in [0, 1]); the binary reward is 1 when that score is at least
``RG_THRESHOLD`` (1.0: only answers the dataset itself calls fully correct), else 0. As for every
text task the completion must end with exactly one <eos> and hold no other special token.
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from rlvr.errors import ConfigError, UserError
from rlvr.tasks.text import TextTask

RG_POOL = 2000
RG_THRESHOLD = 1.0


def create_dataset(name: str, *, size: int, seed: int) -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise UserError("task.name: rg:NAME needs the rg extra: pip install 'rlvr[rg]'") from None
    try:
        return reasoning_gym.create_dataset(name, size=size, seed=seed)
    except Exception as exc:  # unknown names raise different errors across versions
        known = list(getattr(getattr(reasoning_gym, "factory", None), "DATASETS", {}))
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean 'rg:{close[0]}'?" if close else ""
        raise ConfigError(f"task.name: 'rg:{name}' is not a reasoning-gym dataset ({exc}{hint})") from None


class ReasoningGymTask(TextTask):
    def __init__(self, dataset_name: str, *, max_new_tokens: int = 64, **split: Any) -> None:
        super().__init__(max_new_tokens=max_new_tokens, **split)
        self.name = f"rg:{dataset_name}"
        self.dataset = create_dataset(dataset_name, size=RG_POOL, seed=self.split_seed)
        self.entries = {entry["question"]: entry for entry in (self.dataset[i] for i in range(RG_POOL))}
        self.questions = list(self.entries)

    def random_prompt(self, rng: np.random.Generator) -> str:
        return self.questions[int(rng.integers(len(self.questions)))]

    def solution(self, prompt: str) -> str:
        return str(self.entries[prompt]["answer"])

    def score_text(self, prompt: str, answer: str) -> float:
        score = self.dataset.score_answer(answer=answer.strip(), entry=self.entries[prompt])
        return float(score is not None and score >= RG_THRESHOLD)

    def alphabet_texts(self) -> list[str]:
        return [text for q in self.questions for text in (q, self.solution(q))]
