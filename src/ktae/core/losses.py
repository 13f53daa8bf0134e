"""Losses that GRPO/DAPO trainers need: masked reductions, loss aggregation, the PPO clipped policy loss
(DAPO's clip-higher, dual-clip), KL penalties and entropy.

Pure functions on torch tensors; they run on any device and keep the autograd graph. Conventions:

* ``B`` rollouts (sequences), ``L`` response positions, ``V`` vocabulary size.
* ``mask`` / ``response_mask`` is ``[B, L]``, bool or 0/1 (non-negative float weights also work): 1 on the
  response tokens that count, 0 on padding. Values at masked positions never reach a result, even if they are
  ``inf``/``nan``.
* Metrics are plain Python floats (one host synchronisation per call), ready for a logger.

The semantics follow verl's ``core_algos`` (``agg_loss``, ``compute_policy_loss_vanilla``, ``kl_penalty``),
written afresh; differences are stated in the docstrings.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "LOSS_AGG_MODES",
    "KL_KINDS",
    "masked_sum",
    "masked_mean",
    "aggregate_loss",
    "policy_loss",
    "kl_penalty",
    "kl_loss",
    "high_entropy_mask",
    "entropy_from_logits",
    "entropy_from_log_probs",
]

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
"""Valid values of ``loss_agg_mode`` / ``mode`` in :func:`aggregate_loss`."""

_KL_CANONICAL = {"k1": "k1", "kl": "k1", "abs": "abs", "k2": "k2", "mse": "k2", "k3": "k3", "low_var_kl": "k3"}
KL_KINDS = tuple(_KL_CANONICAL)
"""Valid values of ``kind`` in :func:`kl_penalty`; names on one line are aliases: k1|kl, abs, k2|mse, k3|low_var_kl."""

# Bounds used for numerical safety (the same as verl's).
_LOG_RATIO_CLAMP = 20.0  # |log pi/pi_old| and |log pi_ref/pi| are clamped to this before exp()
_LOW_VAR_KL_CLAMP = 10.0  # the k3 estimate is clamped to [-10, 10]


# --------------------------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------------------------


def _check_tensor(x, name: str, *, floating: bool = False) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_same_shape(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{a_name} and {b_name} must have the same shape, got {a_name}{list(a.shape)} and {b_name}{list(b.shape)}"
        )


def _check_2d(x: torch.Tensor, name: str) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D [B, L], got shape {list(x.shape)}")


def _check_mode(mode) -> None:
    if not isinstance(mode, str) or mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {mode!r}; valid values: {', '.join(LOSS_AGG_MODES)}")


def _check_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _mask_as(mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(bool selector, weights in ``dtype``) of a mask."""
    keep = mask if mask.dtype == torch.bool else mask != 0
    return keep, mask.to(dtype)


def _reduce_dtype(values: torch.Tensor) -> torch.dtype:
    return values.dtype if values.is_floating_point() else torch.get_default_dtype()


# --------------------------------------------------------------------------------------------------------------
# masked reductions
# --------------------------------------------------------------------------------------------------------------


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | Sequence[int] | None = None) -> torch.Tensor:
    """Sum of ``values * mask``.

    Args:
        values: any shape ``S``.
        mask: shape ``S``; bool or 0/1 (non-negative weights also work). Masked entries of ``values`` are
            ignored even when they are ``inf`` or ``nan`` (and get zero gradient).
        dim: dimension(s) to reduce; ``None`` reduces everything to a scalar.

    Returns:
        ``S`` with ``dim`` removed (a 0-d tensor for ``dim=None``); floating point.
    """
    _check_tensor(values, "values")
    _check_tensor(mask, "mask")
    _check_same_shape(values, "values", mask, "mask")
    keep, weight = _mask_as(mask, _reduce_dtype(values))
    masked = torch.where(keep, values.to(weight.dtype), torch.zeros((), dtype=weight.dtype, device=values.device))
    if mask.dtype != torch.bool:
        masked = masked * weight
    if dim is None:
        return masked.sum()
    return masked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | Sequence[int] | None = None) -> torch.Tensor:
    """Mean of ``values`` over the entries where ``mask`` is set: ``masked_sum(values, mask) / mask.sum()``.

    Args:
        values: any shape ``S``.
        mask: shape ``S``; bool or 0/1 (non-negative weights give a weighted mean).
        dim: dimension(s) to reduce; ``None`` reduces everything to a scalar.

    Returns:
        ``S`` with ``dim`` removed. Where the mask is empty (nothing to average) the result is 0, with a finite
        (zero) gradient, rather than ``nan``.
    """
    total = masked_sum(values, mask, dim)
    count = mask.to(total.dtype)
    count = count.sum() if dim is None else count.sum(dim=dim)
    safe = torch.where(count > 0, count, torch.ones((), dtype=count.dtype, device=count.device))
    return total / safe


# --------------------------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------------------------


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "token-mean",
    loss_scale_factor: float | None = None,
) -> torch.Tensor:
    """Aggregate a per-token loss ``[B, L]`` into a scalar.

    Modes (``m`` = mask, ``n_i = sum_t m[i, t]``; "rows" below are the rollouts with ``n_i > 0``):

    * ``token-mean``: ``sum_{i,t} m·loss / sum_{i,t} m`` — every token weighs the same (DAPO, and the paper's
      GRPO/DAPO+KTAE runs).
    * ``seq-mean-token-sum``: mean over rows of ``sum_t m·loss``.
    * ``seq-mean-token-mean``: mean over rows of ``sum_t m·loss / n_i`` (the original GRPO).
    * ``seq-mean-token-sum-norm``: ``(1/B) · sum_i sum_t m·loss / loss_scale_factor`` (Dr. GRPO): a constant
      normaliser, so no length bias. ``loss_scale_factor`` should be the maximum response length of the run and
      kept constant through training; it defaults to ``mask.shape[-1]``. Here all ``B`` rows count, empty or not.

    Rows with no unmasked token carry no tokens and are left out of the two ``seq-mean-*`` means (verl does the
    same); an entirely empty mask gives a loss of 0.

    Args:
        loss_mat: ``[B, L]`` floating point.
        mask: ``[B, L]``, bool or 0/1.
        mode: one of :data:`LOSS_AGG_MODES`.
        loss_scale_factor: positive divisor, used only by ``seq-mean-token-sum-norm``.

    Returns:
        0-d tensor (differentiable with respect to ``loss_mat``).
    """
    _check_mode(mode)
    _check_tensor(loss_mat, "loss_mat", floating=True)
    _check_tensor(mask, "mask")
    _check_2d(loss_mat, "loss_mat")
    _check_same_shape(loss_mat, "loss_mat", mask, "mask")
    if mode == "token-mean":
        return masked_mean(loss_mat, mask)
    seq_sum = masked_sum(loss_mat, mask, dim=-1)  # [B]
    if mode == "seq-mean-token-sum-norm":
        if loss_scale_factor is None:
            loss_scale_factor = mask.shape[-1]
        factor = _check_number(loss_scale_factor, "loss_scale_factor")
        if factor <= 0:
            raise ValueError(f"loss_scale_factor must be > 0, got {loss_scale_factor!r}")
        rows = max(loss_mat.shape[0], 1)
        return seq_sum.sum() / (rows * factor)
    count = mask.to(seq_sum.dtype).sum(dim=-1)  # [B]
    has_tokens = count > 0
    if mode == "seq-mean-token-sum":
        per_seq = seq_sum
    else:  # seq-mean-token-mean
        per_seq = seq_sum / torch.where(has_tokens, count, torch.ones_like(count))
    return masked_mean(per_seq, has_tokens)


# --------------------------------------------------------------------------------------------------------------
# policy loss
# --------------------------------------------------------------------------------------------------------------


def _broadcast_advantages(advantages: torch.Tensor, log_prob: torch.Tensor) -> torch.Tensor:
    _check_tensor(advantages, "advantages", floating=True)
    batch = log_prob.shape[0]
    if advantages.shape == log_prob.shape:
        return advantages
    if advantages.dim() == 1 and advantages.shape[0] == batch:
        return advantages.unsqueeze(-1)
    if advantages.dim() == 2 and tuple(advantages.shape) == (batch, 1):
        return advantages
    raise ValueError(
        f"advantages must have shape [B] or [B, L] matching log_prob{list(log_prob.shape)}, "
        f"got advantages{list(advantages.shape)}"
    )


def policy_loss(
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    loss_agg_mode: str = "token-mean",
    loss_scale_factor: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate loss with separate lower/upper clip (DAPO's clip-higher) and optional dual-clip.

    Per position, with ``r = exp(log_prob - old_log_prob)`` (the log-ratio clamped to [-20, 20] so that ``exp``
    never overflows) and advantage ``A``::

        loss = max(-A·r, -A·clip(r, 1 - clip_low, 1 + clip_high))
        if dual_clip = c is set and A < 0:  loss = min(loss, -A·c)     # Dual-clip PPO (Ye et al., 2020)

    then aggregated over unmasked positions with :func:`aggregate_loss`. Positions where the clip is active
    (``r > 1 + clip_high`` with ``A > 0``, ``r < 1 - clip_low`` with ``A < 0``, or the dual-clip bound) get zero
    gradient. The paper's settings: GRPO ``clip_low = clip_high = 0.2``; DAPO ``clip_low = 0.2, clip_high = 0.28``
    (KTAE's DAPO runs: 0.24).

    Args:
        log_prob: ``[B, L]`` log-probabilities of the response tokens under the current policy (with gradient).
        old_log_prob: ``[B, L]`` the same under the policy that sampled the rollouts (no gradient expected).
        advantages: ``[B]`` (one per rollout, broadcast over positions) or ``[B, L]`` (token-level, e.g. KTAE).
        response_mask: ``[B, L]``, bool or 0/1.
        clip_low: ε_low >= 0 and < 1; the ratio's lower clip bound is ``1 - clip_low``.
        clip_high: ε_high >= 0; the ratio's upper clip bound is ``1 + clip_high``.
        dual_clip: ``None`` (off) or the dual-clip constant ``c > 1`` (verl's ``clip_ratio_c``, typically 3).
        loss_agg_mode: one of :data:`LOSS_AGG_MODES`.
        loss_scale_factor: divisor for ``seq-mean-token-sum-norm`` (see :func:`aggregate_loss`).

    Returns:
        ``(loss, metrics)``: ``loss`` is a 0-d tensor; ``metrics`` holds floats, each a mean over unmasked
        positions (0 when there are none):

        * ``clip_fraction`` — share of positions where the clipped term is the active one (verl ``pg_clipfrac``);
        * ``clip_fraction_lower`` — share where the dual-clip bound is active (verl ``pg_clipfrac_lower``; 0
            when ``dual_clip`` is off);
        * ``approx_kl`` — mean of ``old_log_prob - log_prob`` (verl ``ppo_kl``);
        * ``ratio_mean``, ``ratio_min``, ``ratio_max`` — of the importance ratio ``r`` (1 when no positions).
    """
    _check_mode(loss_agg_mode)
    _check_tensor(log_prob, "log_prob", floating=True)
    _check_tensor(old_log_prob, "old_log_prob", floating=True)
    _check_tensor(response_mask, "response_mask")
    _check_2d(log_prob, "log_prob")
    _check_same_shape(log_prob, "log_prob", old_log_prob, "old_log_prob")
    _check_same_shape(log_prob, "log_prob", response_mask, "response_mask")
    adv = _broadcast_advantages(advantages, log_prob)
    clip_low = _check_number(clip_low, "clip_low")
    clip_high = _check_number(clip_high, "clip_high")
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low!r}")
    if clip_high < 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high!r}")
    if dual_clip is not None:
        dual_clip = _check_number(dual_clip, "dual_clip")
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1 (or None to switch it off), got {dual_clip!r}")

    log_ratio = torch.clamp(log_prob - old_log_prob, min=-_LOG_RATIO_CLAMP, max=_LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        bound = -adv * dual_clip
        dual_active = (adv < 0) & (loss_mat > bound)
        loss_mat = torch.where(adv < 0, torch.minimum(loss_mat, bound), loss_mat)
    loss = aggregate_loss(loss_mat, response_mask, loss_agg_mode, loss_scale_factor)

    with torch.no_grad():
        keep = response_mask if response_mask.dtype == torch.bool else response_mask != 0
        clip_active = (clipped > unclipped).to(ratio.dtype)
        lower = dual_active.to(ratio.dtype) if dual_clip is not None else torch.zeros_like(ratio)
        any_kept = keep.any()
        one = torch.ones((), dtype=ratio.dtype, device=ratio.device)
        r_min = torch.where(keep, ratio, torch.full_like(ratio, math.inf)).amin() if ratio.numel() else one
        r_max = torch.where(keep, ratio, torch.full_like(ratio, -math.inf)).amax() if ratio.numel() else one
        values = torch.stack(
            [
                masked_mean(clip_active, response_mask),
                masked_mean(lower, response_mask),
                masked_mean(-log_ratio, response_mask),
                torch.where(any_kept, masked_mean(ratio, response_mask), one),
                torch.where(any_kept, r_min, one),
                torch.where(any_kept, r_max, one),
            ]
        ).float().tolist()
    names = ("clip_fraction", "clip_fraction_lower", "approx_kl", "ratio_mean", "ratio_min", "ratio_max")
    return loss, dict(zip(names, values))


# --------------------------------------------------------------------------------------------------------------
# KL
# --------------------------------------------------------------------------------------------------------------


def kl_penalty(log_prob: torch.Tensor, ref_log_prob: torch.Tensor, kind: str = "low_var_kl") -> torch.Tensor:
    """Per-position estimate of KL(π ‖ π_ref) from the log-probabilities of the sampled tokens (Schulman, 2020).

    With ``d = log_prob - ref_log_prob``:

    * ``k1`` / ``kl``: ``d`` (unbiased, high variance, can be negative);
    * ``abs``: ``|d|``;
    * ``k2`` / ``mse``: ``d² / 2``;
    * ``k3`` / ``low_var_kl``: ``exp(-d) + d - 1`` (unbiased, >= 0, low variance), computed with ``-d`` clamped
      to [-20, 20] and the result clamped to [-10, 10], as verl does, so that one token far off the reference
      cannot blow up the loss (positions beyond the clamp get zero gradient).

    Args:
        log_prob: ``[...]`` log-probabilities under the current policy.
        ref_log_prob: same shape, under the reference policy.
        kind: one of :data:`KL_KINDS`.

    Returns:
        Tensor of the same shape (no masking applied).
    """
    if not isinstance(kind, str) or kind not in _KL_CANONICAL:
        raise ValueError(f"unknown kl kind {kind!r}; valid values: {', '.join(KL_KINDS)}")
    _check_tensor(log_prob, "log_prob", floating=True)
    _check_tensor(ref_log_prob, "ref_log_prob", floating=True)
    _check_same_shape(log_prob, "log_prob", ref_log_prob, "ref_log_prob")
    canonical = _KL_CANONICAL[kind]
    diff = log_prob - ref_log_prob
    if canonical == "k1":
        return diff
    if canonical == "abs":
        return diff.abs()
    if canonical == "k2":
        return 0.5 * diff.square()
    neg = torch.clamp(-diff, min=-_LOG_RATIO_CLAMP, max=_LOG_RATIO_CLAMP)  # log(pi_ref / pi)
    k3 = torch.exp(neg) - neg - 1.0
    return torch.clamp(k3, min=-_LOW_VAR_KL_CLAMP, max=_LOW_VAR_KL_CLAMP)


def kl_loss(
    log_prob: torch.Tensor,
    ref_log_prob: torch.Tensor,
    mask: torch.Tensor,
    kind: str = "low_var_kl",
    loss_agg_mode: str = "token-mean",
    loss_scale_factor: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """KL-to-reference loss: :func:`kl_penalty` aggregated over unmasked positions with :func:`aggregate_loss`.

    The trainer adds ``coef · loss`` to the policy loss (the paper's GRPO runs: ``kind="low_var_kl"``, coef 0.001).

    Args:
        log_prob: ``[B, L]`` current policy (with gradient).
        ref_log_prob: ``[B, L]`` reference policy.
        mask: ``[B, L]``, bool or 0/1.
        kind: one of :data:`KL_KINDS`.
        loss_agg_mode: one of :data:`LOSS_AGG_MODES`.
        loss_scale_factor: divisor for ``seq-mean-token-sum-norm``.

    Returns:
        ``(loss, metrics)``: 0-d tensor and floats ``kl_loss`` (the loss value), ``kl_mean`` (token mean of the
        estimate) and ``kl_max`` (its largest value over unmasked positions; 0 when there are none).
    """
    if not isinstance(kind, str) or kind not in _KL_CANONICAL:
        raise ValueError(f"unknown kl kind {kind!r}; valid values: {', '.join(KL_KINDS)}")
    _check_mode(loss_agg_mode)
    _check_tensor(log_prob, "log_prob", floating=True)
    _check_tensor(mask, "mask")
    _check_2d(log_prob, "log_prob")
    _check_same_shape(log_prob, "log_prob", mask, "mask")
    per_token = kl_penalty(log_prob, ref_log_prob, kind)
    loss = aggregate_loss(per_token, mask, loss_agg_mode, loss_scale_factor)
    with torch.no_grad():
        keep = mask if mask.dtype == torch.bool else mask != 0
        zero = torch.zeros((), dtype=per_token.dtype, device=per_token.device)
        top = torch.where(keep, per_token, torch.full_like(per_token, -math.inf)).amax() if keep.numel() else zero
        values = torch.stack(
            [loss.detach(), masked_mean(per_token, mask), torch.where(keep.any(), top, zero)]
        ).float().tolist()
    return loss, dict(zip(("kl_loss", "kl_mean", "kl_max"), values))


# --------------------------------------------------------------------------------------------------------------
# entropy
# --------------------------------------------------------------------------------------------------------------


def _entropy_block(logits: torch.Tensor) -> torch.Tensor:
    return _entropy_of(torch.log_softmax(logits, dim=-1))


def _entropy_of(log_p: torch.Tensor) -> torch.Tensor:
    # exp(log_p) * log_p is 0 * -inf = nan where a logit is -inf; clamping log_p to the smallest finite value
    # makes those terms exactly 0 (p is 0 there) without touching the others.
    finite_log_p = torch.clamp(log_p, min=torch.finfo(log_p.dtype).min)
    return -(log_p.exp() * finite_log_p).sum(dim=-1)


def entropy_from_log_probs(log_probs: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Entropy ``-sum_v p_v log p_v`` at every position from normalised log-probabilities ``log_softmax(logits)``
    ``[..., V]`` (what a caller that needs the log-probabilities anyway already has: one ``log_softmax`` fewer than
    :func:`entropy_from_logits`, the same numbers). ``chunk_size`` as there. Returns ``[...]``, differentiable."""
    return _per_position(_entropy_of, log_probs, chunk_size, "log_probs")


def entropy_from_logits(logits: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Entropy of the categorical distribution ``softmax(logits)`` at every position, in nats.

    ``H = -sum_v p_v log p_v`` with ``log p = log_softmax(logits)`` (logsumexp-based, so large logits do not
    overflow); logits of ``-inf`` (banned tokens) contribute 0. Half/bfloat16 logits are computed in float32.

    Args:
        logits: ``[..., V]`` floating point, e.g. ``[B, L, V]``.
        chunk_size: when set, process this many positions at a time to bound the temporary ``[n, V]`` buffers
            (useful for V = 150k); the result and its gradient are the same.

    Returns:
        ``[...]`` (``logits.shape[:-1]``), float32 for half/bfloat16 input, otherwise ``logits.dtype``;
        differentiable with respect to ``logits``.
    """
    return _per_position(_entropy_block, logits, chunk_size, "logits")


def _per_position(block, values: torch.Tensor, chunk_size: int | None, name: str) -> torch.Tensor:
    """``block`` ([n, V] -> [n]) over the positions of ``values`` ``[..., V]`` (checked; half/bfloat16 computed in
    float32), ``chunk_size`` positions at a time when set. Returns ``[...]``."""
    _check_tensor(values, name, floating=True)
    if values.dim() < 1 or values.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty last (vocabulary) dimension, got shape {list(values.shape)}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if values.dtype in (torch.float16, torch.bfloat16):
        values = values.float()
    flat = values.reshape(-1, values.shape[-1])
    if chunk_size is None or flat.shape[0] <= chunk_size:
        out = block(flat)
    else:
        out = torch.cat([block(part) for part in flat.split(chunk_size, dim=0)])
    return out.reshape(values.shape[:-1])


def high_entropy_mask(entropy: torch.Tensor, mask: torch.Tensor, top_quantile: float) -> torch.Tensor:
    """The tokens among the ``top_quantile`` share of highest entropy ("Beyond the 80/20 rule", Wang et al. 2025).

    The threshold is the ``1 - top_quantile`` quantile (linear interpolation, ``torch.quantile``) of the
    entropies at unmasked positions of the whole batch; a token is kept when its entropy is at least that.
    ``top_quantile = 1`` keeps every unmasked token; ``0.2`` keeps the top 20% (ties at the threshold are
    all kept). Used to restrict the policy-gradient loss to these tokens, as TRL's ``top_entropy_quantile``.

    Args:
        entropy: ``[B, L]`` per-token entropy (detached; only its order matters).
        mask: ``[B, L]`` bool or 0/1, 1 on response tokens.
        top_quantile: share of tokens to keep, in ``(0, 1]``.

    Returns:
        ``[B, L]`` bool, True on kept tokens (never on masked positions; all False when nothing is unmasked).
    """
    _check_tensor(entropy, "entropy", floating=True)
    _check_2d(entropy, "entropy")
    _check_tensor(mask, "mask")
    _check_same_shape(mask, "mask", entropy, "entropy")
    value = _check_number(top_quantile, "top_quantile")
    if not 0.0 < value <= 1.0:
        raise ValueError(f"top_quantile must be in (0, 1], got {top_quantile!r}")
    keep = mask.bool()
    selected = entropy.detach()[keep].float()
    if selected.numel() == 0:
        return torch.zeros_like(keep)
    threshold = torch.quantile(selected, 1.0 - value)
    return keep & (entropy.detach().float() >= threshold)
