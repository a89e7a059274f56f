"""Learned reward models from pairwise preferences (Bradley-Terry), and synthetic preferences.

Bradley-Terry: P(chosen > rejected) = sigmoid(r(x, y_c) - r(x, y_r)); the reward model r minimises
    L = -mean log sigmoid(r_c - r_r)        dL/dr_c = -(1 - sigmoid(r_c - r_r)) / n,  dL/dr_r = -dL/dr_c
(Ouyang et al. 2022, eq. 1; the notes' RLHF contrast). The model is a small Llama with a one-logit
head (``LlamaForSequenceClassification``) over the task's character tokenizer, saved as a Hugging
Face folder, so ``rlvr.rewards.sources`` (``AutoModelForSequenceClassification``) loads it.

Synthetic preferences for a text task: two answers to one prompt, drawn from the solution, the
task's flawed solution and random corruptions of the solution; the one with the higher verifier
score (``task.score_text``) is chosen, ties are dropped. So the model can learn the verifier's
partial credit, e.g. for sort-text "the more-sorted answer is preferred".
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rlvr.errors import UserError
from rlvr.rewards.sources import SequenceScorer
from rlvr.tokenizer import CharTokenizer


def bradley_terry_loss(chosen: Tensor, rejected: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """chosen, rejected (n,) rewards -> -mean log sigmoid(chosen - rejected), and its accuracy."""
    margin = chosen - rejected
    loss = -F.logsigmoid(margin).mean()
    return loss, {"accuracy": (margin > 0).float().mean().detach(), "margin": margin.mean().detach()}


# ----------------------------------------------------------------------------- synthetic data


def corrupt(text: str, rng: np.random.Generator, alphabet: str) -> str:
    """One random edit of an answer: shuffle its words, replace a character, drop or repeat one."""
    words = text.split(" ")
    edit = int(rng.integers(4))
    if edit == 0 and len(words) > 1:
        rng.shuffle(words)
        return " ".join(words)
    chars = list(text) or [" "]
    i = int(rng.integers(len(chars)))
    if edit == 1 or edit == 0:
        chars[i] = alphabet[int(rng.integers(len(alphabet)))]
    elif edit == 2:
        del chars[i]
    else:
        chars.insert(i, chars[i])
    return "".join(chars)


def candidate(task: Any, prompt: str, rng: np.random.Generator, alphabet: str) -> str:
    roll = rng.random()
    if roll < 0.15:
        return task.solution(prompt)
    answer = task.flawed_solution(prompt, rng) if roll < 0.4 else task.solution(prompt)
    for _ in range(int(rng.integers(1, 4))):
        answer = corrupt(answer, rng, alphabet)
    return answer


def preference_pairs(task: Any, count: int, *, seed: int) -> list[dict[str, str]]:
    """``count`` {prompt, chosen, rejected} from the task's training prompts (never held-out ones)."""
    from rlvr.tasks.text import TextTask

    if not isinstance(task, TextTask):
        raise UserError(f"--task: {task.name!r} is not a text task; preference data needs string answers")
    rng = np.random.default_rng([seed, 7])
    alphabet = "".join(sorted(set("".join(task.alphabet_texts())) - set(">")))
    pairs: list[dict[str, str]] = []
    for _ in range(200 * count):
        prompt = task.train_prompt(rng)
        a, b = candidate(task, prompt, rng, alphabet), candidate(task, prompt, rng, alphabet)
        sa, sb = task.score_text(prompt, a), task.score_text(prompt, b)
        if sa != sb:
            chosen, rejected = (a, b) if sa > sb else (b, a)
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            if len(pairs) == count:
                return pairs
    raise UserError(f"--task: {task.name!r} gave too few answer pairs with different scores")


def read_pairs(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"--data: no such file {str(path)!r}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UserError(f"--data: {str(path)!r} line {number} is not JSON") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("prompt", "chosen", "rejected")):
            raise UserError(f"--data: {str(path)!r} line {number} needs string fields prompt, chosen, rejected")
        pairs.append({k: record[k] for k in ("prompt", "chosen", "rejected")})
    if len(pairs) < 2:
        raise UserError(f"--data: {str(path)!r} holds {len(pairs)} preference pairs; need at least 2")
    return pairs


# ----------------------------------------------------------------------------- the model


def build_reward_model(tokenizer: CharTokenizer, *, hidden_size: int, num_layers: int, seed: int) -> SequenceScorer:
    """A small LlamaForSequenceClassification (one logit) and the HF view of the char tokenizer."""
    from rlvr.policies.hf import import_transformers

    transformers = import_transformers()  # a one-line error without the hf extra
    transformers.utils.logging.disable_progress_bar()
    LlamaConfig, LlamaForSequenceClassification = transformers.LlamaConfig, transformers.LlamaForSequenceClassification
    PreTrainedTokenizerFast = transformers.PreTrainedTokenizerFast
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, num_labels=1, pad_token_id=tokenizer.pad_id,
                         bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    model = LlamaForSequenceClassification(config)
    hf_tok = PreTrainedTokenizerFast(**hf_tokenizer_args(tokenizer))
    return SequenceScorer(model, hf_tok)


def hf_tokenizer_args(tokenizer: CharTokenizer) -> dict[str, Any]:
    from tokenizers import Tokenizer
    return {"tokenizer_object": Tokenizer.from_str(json.dumps(tokenizer.hf_tokenizer_json())),
            "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
            "padding_side": "left"}


def batches(pairs: list[dict[str, str]], size: int, rng: np.random.Generator) -> Iterator[list[dict[str, str]]]:
    while True:
        order = rng.permutation(len(pairs))
        for start in range(0, len(order) - size + 1, size):
            yield [pairs[i] for i in order[start:start + size]]


def pair_logits(scorer: SequenceScorer, pairs: list[dict[str, str]]) -> tuple[Tensor, Tensor]:
    chosen = scorer.logits([p["prompt"] + p["chosen"] for p in pairs])
    rejected = scorer.logits([p["prompt"] + p["rejected"] for p in pairs])
    return chosen, rejected


@torch.no_grad()
def pairwise_accuracy(scorer: SequenceScorer, pairs: list[dict[str, str]]) -> float:
    scorer.model.eval()
    correct = 0
    for start in range(0, len(pairs), 256):
        chosen, rejected = pair_logits(scorer, pairs[start:start + 256])
        correct += int((chosen > rejected).sum())
    return correct / len(pairs)


def train_reward_model(scorer: SequenceScorer, train: list[dict[str, str]], heldout: list[dict[str, str]], *,
                       steps: int, batch_size: int, lr: float, seed: int, log: Any = print) -> dict[str, float]:
    """Adam on the Bradley-Terry loss; returns the summary metrics (held-out accuracy included)."""
    rng = np.random.default_rng([seed, 8])
    optimizer = torch.optim.AdamW(scorer.model.parameters(), lr=lr, weight_decay=0.0)
    size = min(batch_size, len(train))
    stream = batches(train, size, rng)
    loss_sum, acc_sum, window = 0.0, 0.0, 0
    for step in range(1, steps + 1):
        scorer.model.train()
        loss, metrics = bradley_terry_loss(*pair_logits(scorer, next(stream)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(scorer.model.parameters(), 1.0)
        optimizer.step()
        loss_sum, acc_sum, window = loss_sum + float(loss.detach()), acc_sum + float(metrics["accuracy"]), window + 1
        if step % max(steps // 10, 1) == 0 or step == steps:
            log(f"rm step {step}/{steps}  loss {loss_sum / window:.4f}  train acc {acc_sum / window:.3f}")
            last_loss, last_acc, (loss_sum, acc_sum, window) = loss_sum / window, acc_sum / window, (0.0, 0.0, 0)
    result = {"train/loss": last_loss, "train/pairwise_accuracy": last_acc,
              "heldout/pairwise_accuracy": pairwise_accuracy(scorer, heldout)}
    assert all(math.isfinite(v) for v in result.values())
    return result
