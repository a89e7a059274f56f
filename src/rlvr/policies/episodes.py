"""Multi-turn sampling: a language-model policy plays whole episodes against environments.

An episode after its prompt (the env's first observation) is one token row, laid out as it was read:

    a_1 <eos> o_1 a_2 <eos> o_2 ... a_k <eos> [pad ...]

the policy's turns a_i up to and including their end-of-turn token (``mask`` 1: the tokens the loss
sees, exactly the ids sampled, never re-tokenised) and the env's observations o_i (``attended`` 1,
``mask`` 0: context the model reads but is never trained on). ``attended`` is 1 on a prefix of each
row, so every training pass that scores a response scores an episode unchanged (its ``mask``
argument there is ``attended``); the loss then weighs the policy's tokens only.

Sampling is one token per step for all N = B * G episodes together: a row either samples (its policy's
turn), or is fed the next token of its observation (teacher-forced: the KV cache takes it, its logits
are ignored), or is finished. A turn ends at <eos>: its text (without <eos>) goes to the env, and the
env's next observation is queued for the row. The KV cache is kept across turns (``decode``); the
plain reference recomputes every step from the whole sequence (``cached=False``), draws the same
tokens from the same generator and is what tests compare the cached path and training against.

Observations are shown to the model as the prompt is: a character policy reads each one through
``policy.prompt_template`` (no <bos>: that opens the episode only); a chat model reads the user turn
its chat template renders after the assistant's, which must leave the earlier turns as they were
(``chat_observation`` checks it, one line naming the template when it does not).
Shapes: B rows, G episodes per row, N = B * G, P prompt width, T episode tokens, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from rlvr.envs.base import Step
from rlvr.errors import UserError
from rlvr.policies.lm import LMPolicy
from rlvr.policies.tokens import draw, prompt_mask


class EnvSide(Protocol):
    """What the sampler needs of the envs of one batch (rlvr.envs.guard.EnvRunner)."""

    fallback_reward: float
    faults: Mapping[int, Any]  # the batch's faulted episodes (each one's first fault: its ``kind``)

    def start(self, rows: Sequence[Any]) -> list[Any]: ...           # first observation (str) or a fault
    def step(self, actions: Mapping[int, str]) -> dict[int, Any]: ...  # Step or a fault, per episode
    def finish(self, index: int) -> dict[str, float]: ...              # the episode's env metrics


@dataclass(frozen=True)
class EpisodeLimits:
    max_turns: int       # policy turns per episode (rlvr's limit: an episode cut here is truncated)
    max_tokens: int      # tokens per episode after the prompt, policy and observation tokens together
    max_new_tokens: int  # tokens per policy turn, <eos> included


@dataclass
class EpisodeSamples:
    prompt_ids: Tensor      # (B, P) each row's first observation, as the policy reads a prompt
    response_ids: Tensor    # (N, T) long: the episode's tokens after the prompt
    mask: Tensor            # (N, T) float: 1 on the tokens the policy sampled
    attended: Tensor        # (N, T) float: 1 on every token of the episode (sampled and observed)
    logprobs: Tensor        # (N, T) log pi of each sampled token (0 elsewhere)
    token_rewards: Tensor   # (N, T) each turn's reward on the turn's last token (<eos>)
    returns: Tensor         # (N,) the episode's return: the sum of its turns' rewards (a fault: the fallback)
    truncated: Tensor       # (N,) bool: cut by max_turns, max_tokens or a turn without <eos>
    faults: list[str | None]                 # (N,) the fault kind that ended the episode, if any
    turns: list[list[tuple[str, str]]]       # (N,) ("env" | "policy", text) in order
    env_metrics: list[dict[str, float]] = field(default_factory=list)  # (N,) Env.metrics()
    late_faults: list[str | None] = field(default_factory=list)  # (N,) a fault in metrics / close (return kept)


def is_fault(value: Any) -> bool:
    return not isinstance(value, (str, Step))


def chat_observation(codec: Any, messages: list[dict[str, str]], observation: str) -> list[int]:
    """The ids that follow a chat model's last turn (its <eos> included in the turn) to show it the
    user message ``observation`` and open its next turn. ``messages`` ends with that assistant turn.
    The template must render the conversation so far unchanged with the new turn appended (else the
    tokens the policy sampled would not be the tokens it is trained on): one line naming it otherwise."""
    tokenizer = codec.tokenizer

    def render(msgs: list[dict[str, str]], generation: bool) -> str:
        return str(tokenizer.apply_chat_template(msgs, add_generation_prompt=generation, tokenize=False))

    before = render(messages[:-1], True) + messages[-1]["content"] + str(tokenizer.eos_token)
    after = render([*messages, {"role": "user", "content": observation}], True)
    if not (after.startswith(render(messages, False)) and after.startswith(before)):
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise UserError(f"policy.model: the chat template of {name!r} is not prefix-preserving across turns "
                        "(it re-renders earlier turns), so multi-turn episodes cannot keep the sampled tokens")
    return list(tokenizer(after[len(before):], add_special_tokens=False).input_ids)


class TurnCodec:
    """The ids of an episode's prompt and observations for one policy (see the module docstring)."""

    def __init__(self, policy: LMPolicy) -> None:
        self.policy = policy
        self.chat = bool(getattr(policy.codec, "use_chat", False))

    def observation(self, turns: list[tuple[str, str]], observation: str) -> list[int]:
        codec, template = self.policy.codec, self.policy.prompt_template
        if not self.chat:
            return list(codec.encode_answer(template.replace("{prompt}", observation)))
        system = getattr(codec, "system_prompt", None)
        messages = [{"role": "system", "content": system}] if system else []
        for role, text in turns:
            content = template.replace("{prompt}", text) if role == "env" else text
            messages.append({"role": "user" if role == "env" else "assistant", "content": content})
        return chat_observation(codec, messages, template.replace("{prompt}", observation))


def first_observations(opened: list[Any], group_size: int) -> list[str]:
    """Each row's prompt: the first observation its G envs opened with (they must agree)."""
    prompts = []
    for b in range(len(opened) // group_size):
        texts = {o for o in opened[b * group_size:(b + 1) * group_size] if isinstance(o, str)}
        if len(texts) > 1:
            raise UserError(f"env: the {group_size} episodes of one row opened with different observations "
                            f"{sorted(texts)[:2]}; an env's reset must depend on its row only")
        prompts.append(texts.pop() if texts else "")
    return prompts


class EpisodeBatch:
    """The N episodes of one sampling call while they run: per row, whether it has ended (and how),
    its turns so far, the observation tokens still to feed, its return; and per step the tokens
    drawn, their log-probs, which rows sampled and which were live (``samples`` stacks them)."""

    def __init__(self, opened: list[Any], envs: EnvSide, turn_codec: TurnCodec, limits: EpisodeLimits) -> None:
        n = len(opened)
        self.envs, self.turn_codec, self.limits = envs, turn_codec, limits
        self.done = torch.tensor([is_fault(o) for o in opened])                      # (N,)
        self.faults: list[str | None] = [getattr(o, "kind", None) if is_fault(o) else None for o in opened]
        self.returns = torch.tensor([envs.fallback_reward if f else 0.0 for f in self.faults])
        self.truncated = torch.zeros(n, dtype=torch.bool)
        self.finished = torch.zeros(n, dtype=torch.bool)                             # envs.finish called
        self.turns: list[list[tuple[str, str]]] = [[("env", o)] if isinstance(o, str) else [] for o in opened]
        self.env_metrics: list[dict[str, float]] = [{} for _ in range(n)]
        self.late_faults: list[str | None] = [None] * n   # a fault in the env's metrics or close
        self.queue: list[list[int]] = [[] for _ in range(n)]   # observation tokens still to feed
        self.turn: list[list[int]] = [[] for _ in range(n)]    # the policy's current turn so far
        self.turn_count = [0] * n
        self.rewards_at: list[tuple[int, int, float]] = []     # (row, step, reward)
        self.tokens: list[Tensor] = []
        self.logps: list[Tensor] = []
        self.sampled: list[Tensor] = []
        self.live: list[Tensor] = []

    def step_tokens(self, logits: Tensor, *, pad_id: int, temperature: float, top_p: float,
                    generator: torch.Generator | None) -> Tensor:
        """This step's token of every row (N,): drawn where the policy has its turn, the next observation
        token where one is queued, <pad> where the episode has ended."""
        forced = torch.tensor([bool(q) for q in self.queue])
        acting = ~self.done & ~forced
        token, logp = draw(logits, ~acting, pad_id=pad_id, temperature=temperature, top_p=top_p, generator=generator)
        for n in forced.nonzero().flatten().tolist():
            token[n] = self.queue[n].pop(0)
        self.tokens.append(token)
        self.logps.append(logp.masked_fill(~acting, 0.0))
        self.sampled.append(acting)
        self.live.append(~self.done)
        return token

    def ended_turns(self, codec: Any) -> dict[int, str]:
        """The turns this step's tokens ended: their texts (without <eos>) by row. A turn that reaches
        max_new_tokens without <eos> ends its episode, truncated (it never reaches the env)."""
        actions: dict[int, str] = {}
        token = self.tokens[-1]
        for n in self.sampled[-1].nonzero().flatten().tolist():
            self.turn[n].append(int(token[n]))
            if self.turn[n][-1] == codec.eos_id:
                actions[n] = codec.decode(self.turn[n][:-1])
                self.turns[n].append(("policy", actions[n]))
                self.turn[n], self.turn_count[n] = [], self.turn_count[n] + 1
            elif len(self.turn[n]) >= self.limits.max_new_tokens:
                self.turns[n].append(("policy", codec.decode(self.turn[n])))
                self.done[n], self.truncated[n] = True, True
        return actions

    def answered(self, results: Mapping[int, Any], step: int) -> None:
        """The envs' answers to this step's turns: rewards, ends (a fault: the fallback return), and the
        next observations queued as tokens."""
        for n, result in results.items():
            if is_fault(result):
                self.faults[n], self.done[n], self.returns[n] = result.kind, True, self.envs.fallback_reward
                continue
            self.returns[n] += result.reward
            self.rewards_at.append((n, step, result.reward))
            if result.done:
                self.done[n] = True
            elif self.turn_count[n] >= self.limits.max_turns:
                self.done[n], self.truncated[n] = True, True
            else:
                observation = result.observation if result.observation is not None else ""
                self.turns[n].append(("env", observation))
                self.queue[n] = self.turn_codec.observation(self.turns[n][:-1], observation)

    def close_ended(self, *, out_of_tokens: bool) -> None:
        """Episodes that ended this step (all, when the token budget is spent: truncated) read their env's
        metrics and close it, once."""
        if out_of_tokens:
            self.truncated |= ~self.done
            self.done[:] = True
        for n in (self.done & ~self.finished).nonzero().flatten().tolist():
            self.env_metrics[n], self.finished[n] = self.envs.finish(n), True
            late = self.envs.faults.get(n)
            if self.faults[n] is None and late is not None:  # the episode ran to its end: only its metrics are lost
                self.late_faults[n] = late.kind

    def samples(self, prompt_ids: Tensor) -> EpisodeSamples:
        mask = torch.stack(self.sampled, 1).float()
        token_rewards = torch.zeros_like(mask)
        for n, t, reward in self.rewards_at:
            token_rewards[n, t] += reward
        for n, kind in enumerate(self.faults):  # a faulted episode's return: the fallback, on its last sampled token
            if kind is not None:
                token_rewards[n] = 0.0
                last = mask[n].nonzero()
                if len(last):
                    token_rewards[n, int(last[-1])] = self.envs.fallback_reward
        return EpisodeSamples(prompt_ids=prompt_ids, response_ids=torch.stack(self.tokens, 1), mask=mask,
                              attended=torch.stack(self.live, 1).float(), logprobs=torch.stack(self.logps, 1),
                              token_rewards=token_rewards, returns=self.returns, truncated=self.truncated,
                              faults=self.faults, turns=self.turns, env_metrics=self.env_metrics,
                              late_faults=self.late_faults)


@torch.no_grad()
def sample_episodes(policy: LMPolicy, rows: Sequence[Any], envs: EnvSide, *, group_size: int,
                    limits: EpisodeLimits, generator: torch.Generator | None, temperature: float,
                    cached: bool = True) -> EpisodeSamples:
    """G episodes per row (generator None: greedy). ``cached``: the KV cache carried across turns (the
    rows of finished episodes dropped from it once few are live); False: the plain reference, every
    step recomputed from the whole sequence."""
    N = len(rows) * group_size
    opened = envs.start([rows[n // group_size] for n in range(N)])
    prompt_ids = policy.encode_prompts(first_observations(opened, group_size))      # (B, P)
    batch = EpisodeBatch(opened, envs, TurnCodec(policy), limits)
    pmask = prompt_mask(prompt_ids, policy.codec.pad_id)
    key_mask = pmask.repeat_interleave(group_size, 0)                               # (N, P)
    next_pos = key_mask.sum(-1)                                                     # (N,)
    logits, cache = policy.prefill(prompt_ids, pmask)
    logits = logits.repeat_interleave(group_size, 0)                                # (N, V)
    computed = torch.arange(N)                                                      # the rows the cache holds
    if cached:
        cache = policy.expand(cache, group_size, room=limits.max_tokens)
    for t in range(limits.max_tokens):
        token = batch.step_tokens(logits, pad_id=policy.codec.pad_id, temperature=temperature, top_p=policy.top_p,
                                  generator=generator)
        batch.answered(envs.step(batch.ended_turns(policy.codec)), t)
        batch.close_ended(out_of_tokens=t == limits.max_tokens - 1)
        if bool(batch.done.all()):
            break
        live = batch.live[-1]
        key_mask = torch.cat([key_mask, live[:, None]], 1)
        if cached:
            still = (~batch.done)[computed]
            if float(still.float().mean()) < policy.decode_rows.compact_below:
                cache, computed = policy.select(cache, still.nonzero().flatten()), computed[still]
            logits = torch.zeros(N, logits.shape[-1])  # every row drawn from (the same random numbers)
            logits[computed], cache = policy.decode(token[computed, None], next_pos[computed, None],
                                                    key_mask[computed], cache)
        else:
            logits = recomputed_logits(policy, prompt_ids, batch.tokens, key_mask, group_size)
        next_pos = next_pos + live.long()
    return batch.samples(prompt_ids)


def recomputed_logits(policy: LMPolicy, prompt_ids: Tensor, tokens: list[Tensor], key_mask: Tensor,
                      group_size: int) -> Tensor:
    """The reference's next-token logits (N, V): one pass over prompt + every token so far, no cache."""
    ids = torch.cat([prompt_ids.repeat_interleave(group_size, 0), torch.stack(tokens, 1)], 1)
    return policy.prefill(ids, key_mask)[0]
