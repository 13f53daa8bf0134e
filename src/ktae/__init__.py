"""ktae: Key-token Advantage Estimation for RL of language models on verifiable rewards."""
from ktae.core.advantages import (
    dr_grpo_advantages,
    explain,
    grpo_advantages,
    key_token_values,
    KTAEParts,
    ktae_advantages,
    ktae_parts,
    rloo_advantages,
    rollout_advantages,
)
from ktae.core.config import KTAEConfig

__version__ = "0.1.0"

__all__ = [
    "KTAEConfig",
    "key_token_values",
    "ktae_advantages",
    "ktae_parts",
    "KTAEParts",
    "explain",
    "grpo_advantages",
    "dr_grpo_advantages",
    "rloo_advantages",
    "rollout_advantages",
]
