"""Options of the key-token advantage estimator (spec §3–5)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

ROLLOUT_ESTIMATORS = ("grpo", "dr_grpo", "rloo")
FISHER_AT_ONE = ("exp", "zero")


@dataclass(frozen=True)
class KTAEConfig:
    """Hyper-parameters of KTAE. The defaults are the paper's effective settings."""

    alpha: float = field(default=1.0, metadata={"help": "weight of the Fisher association strength F = exp(-2p)"})
    beta: float = field(default=1.0, metadata={"help": "weight of the information gain (bits)"})
    gamma: float = field(default=1.0, metadata={"help": "weight of the BM25 term-frequency part of the direction"})
    top: float = field(default=1.0, metadata={"help": "bound of the key-token value: K in (-top, top)"})
    threshold: float = field(default=0.0, metadata={"help": "a rollout is correct when its score is > threshold"})
    fisher_at_one: str = field(
        default="exp",
        metadata={"help": "'exp': F = exp(-2p) always (paper-effective); 'zero': F = 0 when p = 1 (stated intent)"},
    )
    ignore_token_ids: tuple[int, ...] = field(
        default=(), metadata={"help": "token ids whose key-token value is forced to 0 (pad, EOS)"}
    )
    eps: float = field(default=1e-6, metadata={"help": "added to the group std in GRPO's normalisation"})
    rollout: str = field(
        default="grpo", metadata={"help": "rollout-level estimator: 'grpo', 'dr_grpo' (no std) or 'rloo'"}
    )

    def __post_init__(self) -> None:
        for name in ("alpha", "beta", "gamma", "top", "threshold", "eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"KTAEConfig.{name} must be a finite number, got {value!r}")
        for name in ("alpha", "beta", "gamma"):
            if getattr(self, name) < 0:
                raise ValueError(f"KTAEConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.alpha + self.beta <= 0:
            raise ValueError(f"KTAEConfig needs alpha + beta > 0, got alpha={self.alpha!r}, beta={self.beta!r}")
        if self.top <= 0:
            raise ValueError(f"KTAEConfig.top must be > 0, got {self.top!r}")
        if self.eps < 0:
            raise ValueError(f"KTAEConfig.eps must be >= 0, got {self.eps!r}")
        if self.fisher_at_one not in FISHER_AT_ONE:
            raise ValueError(f"KTAEConfig.fisher_at_one must be one of {FISHER_AT_ONE}, got {self.fisher_at_one!r}")
        if self.rollout not in ROLLOUT_ESTIMATORS:
            raise ValueError(f"KTAEConfig.rollout must be one of {ROLLOUT_ESTIMATORS}, got {self.rollout!r}")
        ids = self.ignore_token_ids
        if isinstance(ids, int) and not isinstance(ids, bool):
            ids = (ids,)
        try:
            ids = tuple(int(i) for i in ids)
        except (TypeError, ValueError):
            raise ValueError(f"KTAEConfig.ignore_token_ids must be a sequence of ints, got {self.ignore_token_ids!r}")
        if any(i < 0 for i in ids):
            raise ValueError(f"KTAEConfig.ignore_token_ids must be non-negative, got {ids!r}")
        object.__setattr__(self, "ignore_token_ids", ids)
