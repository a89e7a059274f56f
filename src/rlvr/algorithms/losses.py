"""Policy-gradient losses, per token. Minimising them ascends the expected delta-weighted objective.

Every loss maps
    logp (N, T)        log pi_theta(y_t | ...) of the current policy, with gradient
    old_logp (N, T)    log pi_old of the policy that sampled the batch -- a constant (no gradient)
    advantages (N, T)  the response's delta broadcast over its tokens (or per-token credit)
    mask (N, T)        1 on real response tokens
-> (per-token loss (N, T), detached metrics), with its own settings as keyword arguments: the
fields of the params block it registers with (``params=ClipParams``), nothing else. Aggregation to
a scalar is a separate step. A loss registered with ``whole_batch=True`` reads statistics of every
token it is given (clip-cov, kl-cov), so it is refused with micro-batches (``rlvr.config``).

old_logp is always detached here. The notes' pitfall: differentiating through pi_old as well makes
the ratio of identical policies a constant 1 with zero gradient, so nothing learns.

Padding is inert whatever it holds: ``policy_loss`` sets logp, old_logp and advantages to 0 on
padded positions (a ``torch.where`` selection, so the gradient there is exactly 0) before any
formula runs, and every ratio is exp of a log-ratio clamped to [-20, 20] (as verl clamps it):
r = exp(log r) is at most e^20 ~ 5e8, never inf, and a token past the clamp gets no gradient
through its ratio.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rlvr.algorithms.aggregation import masked
from rlvr.options import opt, params_of
from rlvr.registry import Registry

LOG_RATIO_LIMIT = 20.0  # |log r| beyond this is clamped before exp (verl: the same 20)
LossFn = Callable[..., tuple[Tensor, dict[str, Tensor]]]
POLICY_LOSSES: Registry[LossFn] = Registry("policy loss")


@dataclass
class ClipParams:
    """The settings of the losses that clip a ratio (``params=ClipParams`` below)."""

    clip_eps_low: float = opt(0.2, "clipped losses: lower bound 1 - eps_low on the ratio", ge=0.0, le=1.0)
    clip_eps_high: float | None = opt(None, "clipped losses: upper bound 1 + eps_high (default: eps_low)", ge=0.0)


@dataclass
class DualClipParams(ClipParams):
    dual_clip_c: float = opt(3.0, "dual-clip loss: bound c |A| on the loss of negative-advantage tokens", gt=1.0)


@dataclass
class SAPOParams:
    """SAPO's gate temperatures: a larger tau closes the gate faster as r leaves 1."""

    sapo_tau_pos: float = opt(1.0, "sapo loss: gate temperature of positive-advantage tokens", gt=0.0)
    sapo_tau_neg: float = opt(1.05, "sapo loss: gate temperature of negative-advantage tokens "
                              "(the paper: >= tau_pos, negative updates spread to many tokens)", gt=0.0)


@dataclass
class GMPOParams:
    """GMPO's clip, in log space on each token's log-ratio (the paper's range e^-0.4 .. e^0.4)."""

    gmpo_clip_low: float = opt(0.4, "gmpo loss: a negative-advantage token's log r is clipped below at "
                               "-clip_low", ge=0.0)
    gmpo_clip_high: float = opt(0.4, "gmpo loss: a positive-advantage token's log r is clipped above at "
                                "clip_high", ge=0.0)


@dataclass
class ClipCovParams(ClipParams):
    clip_cov_ratio: float = opt(2e-4, "clip-cov loss: share of the real tokens (at least one) whose gradient "
                                "is detached", gt=0.0, le=1.0)
    clip_cov_lower: float = opt(1.0, "clip-cov loss: only tokens whose covariance is above this")
    clip_cov_upper: float = opt(5.0, "clip-cov loss: ... and below this")


@dataclass
class KLCovParams:
    kl_cov_ratio: float = opt(2e-4, "kl-cov loss: share of the real tokens (at least one), the top by "
                              "covariance, penalised by coef |log r|", gt=0.0, le=1.0)
    kl_cov_coef: float = opt(1.0, "kl-cov loss: weight of the |log r| penalty", ge=0.0)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return masked(values, mask).sum() / mask.sum().clamp(min=1)


def log_ratio_of(logp: Tensor, old_logp: Tensor) -> Tensor:
    """log r = log pi_theta - log pi_old (old detached), clamped to [-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT]."""
    return (logp - old_logp.detach()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)


def ratio_metrics(log_ratio: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """approx_kl = E[(r - 1) - log r] (k3 of pi_old vs pi_theta), as cleanrl logs it."""
    ratio = log_ratio.exp()
    return {
        "policy/approx_kl": masked_mean((ratio - 1) - log_ratio, mask).detach(),
        "policy/ratio_mean": masked_mean(ratio, mask).detach(),
    }


def clip_objective(ratio: Tensor, advantages: Tensor, *, clip_eps_low: float,
                   clip_eps_high: float) -> tuple[Tensor, Tensor]:
    """-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A) and where the clipped term won (float 0/1)."""
    unclipped_obj = ratio * advantages
    clipped_obj = ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high) * advantages
    return -torch.minimum(unclipped_obj, clipped_obj), (clipped_obj < unclipped_obj).to(ratio.dtype)


@POLICY_LOSSES.register("naive")
def naive(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """l_t = -A_t log pi_theta(y_t). The score-function estimator of the notes (REINFORCE).
    old_logp only feeds the metrics (how far the inner loop has moved from the sampling policy)."""
    return -advantages * logp, ratio_metrics(log_ratio_of(logp.detach(), old_logp), mask)


@POLICY_LOSSES.register("ratio")
def ratio(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """l_t = -r_t A_t, r_t = pi_theta / pi_old = exp(logp - old_logp) (importance-weighted, unclipped).

    At pi_theta = pi_old, grad r_t = grad log pi_theta, so the first inner step equals ``naive``.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    return -log_ratio.exp() * advantages, ratio_metrics(log_ratio, mask)


@POLICY_LOSSES.register("clipped", params=ClipParams)
def clipped(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
            clip_eps_low: float, clip_eps_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO/GRPO: l_t = -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t) (Schulman et al. 2017).

    The gradient is zero where the clipped term is the smaller one: r > 1 + eps_high with A > 0,
    or r < 1 - eps_low with A < 0. eps_high > eps_low is DAPO's clip-higher.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    loss, is_clipped = clip_objective(log_ratio.exp(), advantages, clip_eps_low=clip_eps_low,
                                      clip_eps_high=clip_eps_high)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean(is_clipped, mask).detach()
    return loss, metrics


@POLICY_LOSSES.register("dual-clip", params=DualClipParams)
def dual_clip(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
              clip_eps_low: float, clip_eps_high: float, dual_clip_c: float) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clip, and on negative-advantage tokens a bound c |A_t| on the loss (Ye et al. 2020,
    "Mastering Complex Control in MOBA Games", dual-clip PPO; verl ``clip_ratio_c``, default 3):

        l_t = l^clip_t                      if A_t >= 0
        l_t = min(l^clip_t, -c A_t)         if A_t < 0     (c > 1)

    With A < 0 the clipped loss is |A| max(r, clip(r)), unbounded in r: one token the old policy
    found unlikely but the current one likes (r >> 1) could dominate the batch. Beyond r = c the
    loss is the constant c |A|, with zero gradient.
    """
    loss, metrics = clipped(logp, old_logp, advantages, mask, clip_eps_low=clip_eps_low,
                            clip_eps_high=clip_eps_high)
    bound = -dual_clip_c * advantages
    is_negative = advantages < 0
    metrics["policy/dual_clip_frac"] = masked_mean((is_negative & (loss > bound)).to(logp.dtype), mask).detach()
    return torch.where(is_negative, torch.minimum(loss, bound), loss), metrics


def sequence_log_ratio(log_ratio: Tensor, mask: Tensor) -> Tensor:
    """(N, T) per-token log pi_theta/pi_old -> (N, 1) mean over each response's real tokens."""
    return masked(log_ratio, mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)


@POLICY_LOSSES.register("gspo", params=ClipParams)
def gspo(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
         clip_eps_low: float, clip_eps_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """GSPO (Zheng et al. 2025, "Group Sequence Policy Optimization"): one ratio per response,

        s_i = (pi_theta(y_i) / pi_old(y_i))^(1/|y_i|) = exp( mean_t log r_it )
        l_i = -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)

    written per token as in the paper's GSPO-token form (and verl's ``gspo`` loss):
    s_it = sg[s_i] * pi_theta(y_it) / sg[pi_theta(y_it)] has the value s_i at every token and the
    gradient s_i grad log pi(y_it), so with ``seq-mean-token-mean`` aggregation the loss and its
    gradient are exactly those of mean_i l_i. A per-token A_it gives GSPO-token. The paper's clip
    range is tiny (eps_low 3e-4, eps_high 4e-4) because s_i is a per-token geometric mean.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    seq_log_ratio = sequence_log_ratio(log_ratio, mask)                        # (N, 1)
    s = (seq_log_ratio.detach() + logp - logp.detach()).exp()                  # (N, T), value s_i
    loss, is_clipped = clip_objective(s, advantages, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean(is_clipped, mask).detach()
    metrics["policy/seq_ratio_mean"] = seq_log_ratio.detach().exp().mean()
    return loss, metrics


@POLICY_LOSSES.register("cispo", params=ClipParams)
def cispo(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
          clip_eps_low: float, clip_eps_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO (MiniMax-M1 report, 2025): the clipped ratio is a stop-gradient WEIGHT on log pi,

        l_t = -sg[ clip(r_t, 1 - eps_low, 1 + eps_high) ] A_t log pi_theta(y_t)

    Unlike PPO's clip, no token loses its gradient: a clipped token still contributes
    clip(r) A grad log pi, only with a bounded weight. Inside the range the gradient is
    r A grad log pi = A grad r, the same as ``ratio``. (MiniMax uses no lower bound: eps_low = 1.)
    """
    log_ratio = log_ratio_of(logp.detach(), old_logp)
    r = log_ratio.exp()
    weight = r.clamp(1 - clip_eps_low, 1 + clip_eps_high)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean((weight != r).to(logp.dtype), mask).detach()
    return -weight * advantages * logp, metrics


@POLICY_LOSSES.register("sapo", params=SAPOParams)
def sapo(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
         sapo_tau_pos: float, sapo_tau_neg: float) -> tuple[Tensor, dict[str, Tensor]]:
    """SAPO (Gao et al. 2025, "Soft Adaptive Policy Optimization", Qwen, arXiv:2511.20347; TRL
    ``loss_type="sapo"``): a sigmoid gate on the ratio instead of the hard clip,

        l_t = -f(r_t) A_t,    f(r) = sigma(tau (r - 1)) 4 / tau,    tau = tau_pos if A_t > 0 else tau_neg

    grad l_t = -w_t A_t r_t grad log pi with w_t = 4 sigma (1 - sigma): 1 at r = 1 (the first inner
    step is ``naive``'s), falling smoothly to 0 as r leaves 1, so an off-policy token is damped, never
    cut off at a band edge. Logged: ``policy/sapo_weight_mean``, the mean of w over real tokens.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    tau = torch.where(advantages > 0, torch.full_like(logp, sapo_tau_pos), torch.full_like(logp, sapo_tau_neg))
    gate = torch.sigmoid(tau * (log_ratio.exp() - 1))
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/sapo_weight_mean"] = masked_mean(4 * gate * (1 - gate), mask).detach()
    return -gate * (4 / tau) * advantages, metrics


@POLICY_LOSSES.register("gmpo", params=GMPOParams)
def gmpo(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
         gmpo_clip_low: float, gmpo_clip_high: float) -> tuple[Tensor, dict[str, Tensor]]:
    """GMPO (Zhao et al. 2025, "Geometric-Mean Policy Optimization", arXiv:2507.20673; verl
    ``geo_mean``): the geometric mean of the token ratios of a response, each clipped in log space
    on the side its advantage makes optimistic,

        c_t = sgn(A_t) min(sgn(A_t) log r_t, sgn(A_t) clip(log r_t, -clip_low, clip_high))
            = min(log r_t, clip_high) if A_t > 0;  max(log r_t, -clip_low) if A_t < 0;  0 if A_t = 0
        s_i = exp( mean_t c_it ) = (prod_t clipped r_it)^(1/|y_i|),      l_i = -A_i s_i

    The mean of log-ratios is less moved by one outlier token than GRPO's arithmetic mean of ratios,
    hence the paper's wider range. Written per token as ``gspo`` is: s_it = sg[s_i] e^(c_t - sg[c_t])
    has the value s_i and the gradient s_i grad c_t (zero where c_t is clipped), so with
    ``seq-mean-token-mean`` the loss and its gradient are exactly those of mean_i l_i; a per-token
    A_it gives the GMPO-token analogue of GSPO-token.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    zero = torch.zeros_like(log_ratio)
    clipped_log_ratio = torch.where(advantages > 0, log_ratio.clamp(max=gmpo_clip_high),
                                    torch.where(advantages < 0, log_ratio.clamp(min=-gmpo_clip_low), zero))
    seq_log_ratio = sequence_log_ratio(clipped_log_ratio, mask)                        # (N, 1)
    s = (seq_log_ratio.detach() + clipped_log_ratio - clipped_log_ratio.detach()).exp()  # (N, T), value s_i
    metrics = ratio_metrics(log_ratio, mask)
    is_clipped = (advantages != 0) & (clipped_log_ratio != log_ratio)
    metrics["policy/clip_frac"] = masked_mean(is_clipped.to(logp.dtype), mask).detach()
    metrics["policy/seq_ratio_mean"] = seq_log_ratio.detach().exp().mean()
    return -advantages * s, metrics


def token_covariance(logp: Tensor, advantages: Tensor, mask: Tensor) -> Tensor:
    """cov_t = (log pi(y_t) - mean log pi)(A_t - mean A), both means over the real tokens given, (N, T),
    detached: each token's term of the covariance whose size drives the entropy change (Cui et al.)."""
    logp = logp.detach()
    return (logp - masked_mean(logp, mask)) * (advantages - masked_mean(advantages, mask))


def top_share(scores: Tensor, eligible: Tensor, mask: Tensor, share: float) -> Tensor:
    """(N, T) bool: the floor(share * real tokens) (at least 1) eligible positions with the largest
    scores, or all eligible ones if fewer; ties go to the earlier position (row-major). Deterministic:
    no random draw, so a seed's run and the tests reproduce exactly."""
    flat = torch.where(eligible, scores, torch.full_like(scores, -torch.inf)).reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    count = (share * (mask != 0).sum()).floor().clamp(min=1)
    return (rank.reshape(scores.shape) < count) & eligible


@POLICY_LOSSES.register("clip-cov", params=ClipCovParams, whole_batch=True)
def clip_cov(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, clip_eps_low: float,
             clip_eps_high: float, clip_cov_ratio: float, clip_cov_lower: float,
             clip_cov_upper: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Clip-Cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for Reasoning
    Language Models", arXiv:2505.22617; verl ``clip_cov``): PPO's clipped loss, and the gradient of a
    small share of tokens with a large covariance ``token_covariance`` detached,

        l_t = sg[l^clip_t]  if t is selected,   l^clip_t otherwise
        candidates: real tokens PPO did not clip with lower < cov_t < upper; selected: the top
        floor(ratio * real tokens) (at least one) candidates by cov_t

    Tokens whose log-prob and advantage move together most push the entropy down fastest; taking
    them out of the gradient slows the collapse. The paper (and verl) draw the selected candidates
    at random; here the highest covariances are taken, so runs and tests are reproducible without a
    generator. verl also zeroes the selected tokens' loss value; here it is kept (same gradient).
    The means are over the tokens of one call: the whole batch (micro-batches are refused for this
    loss, ``whole_batch``), or one rank's rows under torchrun, as verl computes it per micro-batch.
    """
    log_ratio = log_ratio_of(logp, old_logp)
    r = log_ratio.exp()
    loss, is_clipped = clip_objective(r, advantages, clip_eps_low=clip_eps_low, clip_eps_high=clip_eps_high)
    cov = token_covariance(logp, advantages, mask)
    candidates = (mask != 0) & (is_clipped == 0) & (cov > clip_cov_lower) & (cov < clip_cov_upper)
    selected = top_share(cov, candidates, mask, clip_cov_ratio)
    metrics = ratio_metrics(log_ratio, mask)
    metrics["policy/clip_frac"] = masked_mean(is_clipped, mask).detach()
    metrics["policy/cov_selected_frac"] = masked_mean(selected.to(logp.dtype), mask).detach()
    return torch.where(selected, loss.detach(), loss), metrics


@POLICY_LOSSES.register("kl-cov", params=KLCovParams, whole_batch=True)
def kl_cov(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *,
           kl_cov_ratio: float, kl_cov_coef: float) -> tuple[Tensor, dict[str, Tensor]]:
    """KL-Cov (Cui et al. 2025, the same paper; verl ``kl_cov``): the unclipped ratio loss, plus a
    penalty on how far the top-covariance tokens have moved from the sampling policy,

        l_t = -r_t A_t + k |log r_t|   for the top floor(ratio * real tokens) (at least one) real
        l_t = -r_t A_t                 tokens by ``token_covariance``; every other token

    |log r| is the paper's (and verl's) per-token KL(pi_old || pi_theta) proxy; it is 0, with a zero
    gradient, at r = 1, so it acts from the second inner step on. Deterministic: the selection is by
    rank, as in the paper. Means over the tokens of one call, as for ``clip-cov``.
    """
    loss, metrics = ratio(logp, old_logp, advantages, mask)                           # -r A
    selected = top_share(token_covariance(logp, advantages, mask), mask != 0, mask, kl_cov_ratio)
    penalty = kl_cov_coef * log_ratio_of(logp, old_logp).abs()
    metrics["policy/cov_selected_frac"] = masked_mean(selected.to(logp.dtype), mask).detach()
    return loss + torch.where(selected, penalty, torch.zeros_like(penalty)), metrics


# GPG (Chu et al. 2025): plain REINFORCE on its corrected advantage (deltas ``gpg``): no ratio, no
# clip, no reference; the same function as ``naive``.
POLICY_LOSSES.register("gpg")(naive)


def loss_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The named loss's own settings: its params block's defaults, overridden by ``given``. A setting
    that another loss declares is left out (one dict can serve every loss); a name that no loss
    declares is a TypeError. ClipParams' eps_high None means eps_high = eps_low."""
    declared = {entry: params_of(POLICY_LOSSES, entry) for entry in POLICY_LOSSES.names()}
    unknown = set(given) - {p for names in declared.values() for p in names}
    if unknown:
        raise TypeError(f"policy_loss: no loss has the setting(s) {', '.join(sorted(unknown))}")
    block = POLICY_LOSSES.meta(name).get("params")
    settings = {f.name: f.default for f in dataclasses.fields(block)} if block is not None else {}
    settings.update({k: v for k, v in given.items() if k in settings})
    if "clip_eps_high" in settings and settings["clip_eps_high"] is None:
        settings["clip_eps_high"] = settings["clip_eps_low"]
    return settings


def policy_loss(name: str, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
                **settings: Any) -> tuple[Tensor, dict[str, Tensor]]:
    """Per-token loss (N, T) and metrics of the named loss (see ``POLICY_LOSSES.names()``) with its
    ``settings`` (``loss_settings``: the loss's own, defaults for the rest).
    Padded positions (mask 0) enter every formula as logp = old_logp = advantage = 0, whatever
    they held, so their loss is exactly 0 and no inf or NaN there can reach the value or a gradient."""
    fn = POLICY_LOSSES.get(name)
    real = mask != 0
    logp, old_logp, advantages = (torch.where(real, x, torch.zeros((), dtype=x.dtype))
                                  for x in (logp, old_logp, advantages))
    return fn(logp, old_logp, advantages, mask, **loss_settings(name, settings))
