"""Named recipes: sets of config values that make up a published algorithm.

    rlvr train --config FILE --algo grpo --algo.kl_coef 0

Precedence: dataclass defaults < YAML < ``--algo`` recipe < ``--section.key`` flags. A recipe only
sets the fields below, all ``algo.*`` but ``prorl``'s ``optim.reset_every`` (half of its hard
reset); the task, the policy, the optimiser's other settings and the budget stay the YAML's (and the
reward sources: ``gdpo`` normalises each of ``rewards.sources``, which the user lists).
docs/algorithms.md gives each formula and its source.
"""

from __future__ import annotations

from typing import Any

from rlvr.registry import Registry

RECIPES: Registry[dict[str, Any]] = Registry("recipe")

RECIPES.register("grpo")({  # Shao et al. 2024 (DeepSeekMath); TRL 1.16 differs: token-mean, KL x ratio
    "algo.deltas": "grpo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.2,
    "algo.aggregation": "seq-mean-token-mean", "algo.kl_coef": 0.04, "algo.kl_estimator": "k3",
    "algo.kl_in": "loss",
})
RECIPES.register("dr-grpo")({  # Liu et al. 2025: no std, no length normalisation, no KL
    "algo.deltas": "dr-grpo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.2,
    "algo.aggregation": "seq-sum-constant", "algo.kl_coef": 0.0,
})
RECIPES.register("dapo")({  # Yu et al. 2025: clip-higher, token-mean, dynamic sampling, overlong shaping
    "algo.deltas": "grpo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.28,
    "algo.aggregation": "token-mean", "algo.kl_coef": 0.0, "algo.dynamic_sampling": True,
    "algo.max_refills": 3, "algo.overlong_buffer": 0.2, "algo.overlong_penalty": 1.0,
})
RECIPES.register("gspo")({  # Zheng et al. 2025: sequence-level ratio, tiny clip range
    "algo.deltas": "grpo", "algo.loss": "gspo", "algo.clip_eps_low": 3e-4, "algo.clip_eps_high": 4e-4,
    "algo.aggregation": "seq-mean-token-mean", "algo.kl_coef": 0.0,
})
RECIPES.register("rloo")({  # Ahmadian et al. 2024; TRL RLOOTrainer: k1 KL in the reward, beta 0.05
    "algo.deltas": "rloo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.2,
    "algo.aggregation": "seq-mean-token-sum", "algo.kl_coef": 0.05, "algo.kl_estimator": "k1",
    "algo.kl_in": "reward",
})
RECIPES.register("reinforce++")({  # Hu 2025; OpenRLHF: batch-whitened deltas, k1 KL in the reward
    "algo.deltas": "reinforce++", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.2,
    "algo.aggregation": "token-mean", "algo.kl_coef": 0.01, "algo.kl_estimator": "k1", "algo.kl_in": "reward",
})
RECIPES.register("ppo-clip")({  # Schulman et al. 2017 without a critic; Ziegler et al. 2019 adaptive KL
    "algo.deltas": "normalized", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.2,
    "algo.aggregation": "token-mean", "algo.kl_coef": 0.05, "algo.kl_estimator": "k1", "algo.kl_in": "reward",
    "algo.kl_target": 0.1, "algo.kl_horizon": 10000,
})

RECIPES.register("sapo")({  # Gao et al. 2025 (Qwen): soft sigmoid gate, tau_pos 1.0 / tau_neg 1.05, sequence mean
    "algo.deltas": "grpo", "algo.loss": "sapo", "algo.sapo_tau_pos": 1.0, "algo.sapo_tau_neg": 1.05,
    "algo.aggregation": "seq-mean-token-mean", "algo.kl_coef": 0.0,
})
RECIPES.register("gmpo")({  # Zhao et al. 2025: geometric mean of token ratios, log-space clip (-0.4, 0.4)
    "algo.deltas": "grpo", "algo.loss": "gmpo", "algo.gmpo_clip_low": 0.4, "algo.gmpo_clip_high": 0.4,
    "algo.aggregation": "seq-mean-token-mean", "algo.kl_coef": 0.0,
})
RECIPES.register("gpg")({  # Chu et al. 2025: REINFORCE on alpha-corrected group-centred rewards, no clip, no KL
    "algo.deltas": "gpg", "algo.loss": "gpg", "algo.aggregation": "token-mean", "algo.kl_coef": 0.0,
})
RECIPES.register("w-reinforce")({  # Zhu et al. 2025: REINFORCE on 0.1 x the positive samples + the negative ones
    "algo.deltas": "w-reinforce", "algo.positive_weight": 0.1, "algo.loss": "naive", "algo.aggregation": "token-mean",
    "algo.kl_coef": 0.0,
})

RECIPES.register("gdpo")({  # Liu et al. 2026 (NVIDIA): GRPO's loss on per-source normalised deltas; no KL
    "algo.deltas": "gdpo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.2,
    "algo.aggregation": "token-mean", "algo.kl_coef": 0.0,
})

# ProRL's hard reset: every N outer steps the reference becomes the current policy AND the optimizer
# starts afresh; one N for both halves (the paper resets when validation stalls, between its runs)
PRORL_RESET_EVERY = 50
RECIPES.register("prorl")({  # Liu et al. 2025 (NVIDIA, arXiv:2505.24864): DAPO's clip-higher (0.2 / 0.4),
    # token-mean and dynamic sampling, plus a KL term towards a reference that is hard-reset
    "algo.deltas": "grpo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.4,
    "algo.aggregation": "token-mean", "algo.kl_coef": 1e-4, "algo.kl_estimator": "k3", "algo.kl_in": "loss",
    "algo.dynamic_sampling": True, "algo.max_refills": 3,
    "algo.ref_refresh_every": PRORL_RESET_EVERY, "optim.reset_every": PRORL_RESET_EVERY,
})
RECIPES.register("reinforce-ada")({  # Xiong et al. 2025 (arXiv:2510.04996): Reinforce-Ada-balance, rounds of
    # M = 2G (the paper: 8 for G = 4) up to 4 rounds, the pool's mean as the baseline (no std), DAPO's
    # clip-higher (0.2 / 0.28) and token-mean, no KL
    "algo.deltas": "dr-grpo", "algo.loss": "clipped", "algo.clip_eps_low": 0.2, "algo.clip_eps_high": 0.28,
    "algo.aggregation": "token-mean", "algo.kl_coef": 0.0, "algo.adaptive_sampling": "balanced",
    "algo.adaptive_rounds": 4, "algo.adaptive_round_multiplier": 2,
})



def recipe_values(name: str) -> dict[str, Any]:
    """The dotted config values of the named recipe (a copy)."""
    return dict(RECIPES.get(name))

# A recipe is a whole method, so it says how it samples: one that names no sampling scheme turns off
# the ones a preset may switch on (sort5's dynamic sampling), so `--algo grpo` is GRPO on any preset.
SAMPLING_OFF = {"algo.dynamic_sampling": False, "algo.adaptive_sampling": "none"}
for _name in RECIPES.names():
    for _key, _off in SAMPLING_OFF.items():
        RECIPES.get(_name).setdefault(_key, _off)
