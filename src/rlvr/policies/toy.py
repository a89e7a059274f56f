"""The lecture's toy policy: non-autoregressive, one softmax per response position.

    embeddings  = E[prompt]                                   (B, P, D)
    encoded     = sum_p embeddings[:, p] @ W_enc[p]            (B, D)     one prompt vector
    decoded[t]  = encoded @ W_dec[t]                           (B, T, D)  one vector per position
    logits[t]   = decoded[t] @ E^T                             (B, T, V)  shared embedding
Positions are sampled independently, so log pi(y) = sum_t log softmax(logits[t])[y_t]. The logits
depend on the prompt only: a group's G responses share one forward pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlvr.algorithms.logprobs import logit_score_norm, token_entropy, token_logprobs
from rlvr.options import opt
from rlvr.policies.base import POLICIES, Policy, PolicyConfig, Samples, check_task_kind
from rlvr.tasks import Task


class ToyPolicy(Policy):
    def __init__(self, *, vocab_size: int, embedding_dim: int, prompt_length: int, response_length: int,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.response_length = response_length
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        scale = 1 / math.sqrt(embedding_dim)
        self.encode_weights = nn.Parameter(torch.randn(prompt_length, embedding_dim, embedding_dim) * scale)
        # init_scale < 1 shrinks the initial logits towards 0: a near-uniform first policy
        self.decode_weights = nn.Parameter(torch.randn(response_length, embedding_dim, embedding_dim) * scale * init_scale)

    def forward(self, prompt_ids: Tensor) -> Tensor:
        """prompt_ids (B, P) -> logits (B, T, V)."""
        embeddings = self.embedding(prompt_ids)                                   # (B, P, D)
        encoded = torch.einsum("bpd,pde->be", embeddings, self.encode_weights)    # (B, D)
        decoded = torch.einsum("be,ted->btd", encoded, self.decode_weights)       # (B, T, D)
        return decoded @ self.embedding.weight.T                                  # (B, T, V)

    @torch.no_grad()
    def sample(self, prompt_ids: Tensor, group_size: int, *, generator: torch.Generator,
               temperature: float = 1.0) -> Samples:
        logits = self(prompt_ids) / temperature                                   # (B, T, V)
        batch, length, vocab = logits.shape
        probs = torch.softmax(logits, dim=-1).reshape(batch * length, vocab)
        draws = torch.multinomial(probs, group_size, replacement=True, generator=generator)  # (B*T, G)
        response_ids = draws.reshape(batch, length, group_size).transpose(1, 2)   # (B, G, T)
        logp = token_logprobs(logits.unsqueeze(1).expand(-1, group_size, -1, -1), response_ids)
        return Samples(response_ids=response_ids.reshape(-1, length),
                       mask=torch.ones(batch * group_size, length),
                       logprobs=logp.reshape(-1, length))

    def logprobs(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                 temperature: float = 1.0) -> tuple[Tensor, Tensor]:
        logits = self(prompt_ids)                                                  # (B, T, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature  # bf16 -> fp32
        batch, length, vocab = logits.shape
        grouped = response_ids.reshape(batch, group_size, length)
        logp = token_logprobs(logits.unsqueeze(1).expand(-1, group_size, -1, -1), grouped)
        entropy = token_entropy(logits).unsqueeze(1).expand(-1, group_size, -1)
        return logp.reshape(-1, length), entropy.reshape(-1, length)

    @torch.no_grad()
    def score_norms(self, prompt_ids: Tensor, response_ids: Tensor, mask: Tensor, *, group_size: int,
                    temperature: float = 1.0) -> Tensor:
        logits = self(prompt_ids)                                                  # (B, T, V)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32)) / temperature
        batch, length, _ = logits.shape
        grouped = response_ids.reshape(batch, group_size, length)
        norms = logit_score_norm(logits.unsqueeze(1).expand(-1, group_size, -1, -1), grouped)
        return norms.reshape(-1, length)

    @torch.no_grad()
    def greedy(self, prompt_ids: Tensor) -> tuple[Tensor, Tensor]:
        response_ids = self(prompt_ids).argmax(-1)
        return response_ids, torch.ones_like(response_ids, dtype=torch.float)


@dataclass
class ToyConfig(PolicyConfig):
    embedding_dim: int = opt(10, "embedding dimension", ge=1)
    init_scale: float = opt(1.0, "multiplier on the initial decode matrices "
                            "(1: the notes' init; small: a near-uniform initial policy)", ge=0.0)


@POLICIES.register("toy", config=ToyConfig)
def build_toy(cfg: ToyConfig, task: Task) -> Policy:
    check_task_kind("toy", task, text=False)
    return ToyPolicy(vocab_size=task.vocab_size, embedding_dim=cfg.embedding_dim,
                     prompt_length=task.prompt_length, response_length=task.response_length,
                     init_scale=cfg.init_scale)
