"""Tests of ktae.core.losses: hand-computed cases, gradients, agreement with torch.distributions, errors."""
from __future__ import annotations

import math

import pytest
import torch

from ktae.core.losses import (
    KL_KINDS,
    LOSS_AGG_MODES,
    aggregate_loss,
    entropy_from_logits,
    kl_loss,
    kl_penalty,
    masked_mean,
    masked_sum,
    policy_loss,
)

D = torch.float64


def t(x, dtype=D):
    return torch.tensor(x, dtype=dtype)


# --------------------------------------------------------------------------------------------------------------
# masked_sum / masked_mean
# --------------------------------------------------------------------------------------------------------------

VALUES = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
MASK = [[1, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.int64, torch.float32])
def test_masked_sum_and_mean_by_hand(mask_dtype):
    v, m = t(VALUES), torch.tensor(MASK).to(mask_dtype)
    assert masked_sum(v, m).item() == 7.0
    assert masked_mean(v, m).item() == pytest.approx(7.0 / 3.0)
    assert masked_sum(v, m, dim=-1).tolist() == [3.0, 4.0]
    assert masked_mean(v, m, dim=-1).tolist() == [1.5, 4.0]
    assert masked_mean(v, m, dim=0).tolist() == [2.5, 2.0, 0.0]  # empty column -> 0
    assert masked_sum(v, m, dim=(0, 1)).item() == 7.0


def test_masked_helpers_ignore_nonfinite_padding_and_give_zero_gradient_there():
    v = t([[1.0, float("nan")], [float("inf"), 2.0]]).requires_grad_(True)
    m = t([[1, 0], [0, 1]])
    out = masked_mean(v, m)
    assert out.item() == 1.5
    out.backward()
    assert v.grad.tolist() == [[0.5, 0.0], [0.0, 0.5]]


def test_masked_mean_empty_mask_is_zero_with_finite_gradient():
    v = t([[1.0, 2.0]]).requires_grad_(True)
    out = masked_mean(v, torch.zeros(1, 2, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(v.grad, torch.zeros_like(v))
    assert masked_mean(torch.zeros(0, 3), torch.zeros(0, 3)).item() == 0.0


def test_masked_mean_with_weights():
    v, w = t([1.0, 3.0]), t([1.0, 3.0])
    assert masked_mean(v, w).item() == pytest.approx((1 + 9) / 4)


def test_masked_integer_values():
    v = torch.tensor([[1, 2], [3, 4]])
    assert masked_sum(v, torch.tensor([[1, 0], [1, 1]])).item() == 8.0
    assert masked_mean(v, torch.tensor([[1, 0], [1, 1]])).item() == pytest.approx(8 / 3)


def test_masked_errors():
    with pytest.raises(ValueError, match="values and mask"):
        masked_sum(torch.zeros(2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="values and mask"):
        masked_mean(torch.zeros(2, 3), torch.ones(3))
    with pytest.raises(TypeError, match="values"):
        masked_sum([1.0, 2.0], torch.ones(2))
    with pytest.raises(TypeError, match="mask"):
        masked_mean(torch.ones(2), [1, 1])


# --------------------------------------------------------------------------------------------------------------
# aggregate_loss
# --------------------------------------------------------------------------------------------------------------

# row 0: 3 tokens summing to 6; row 1: 1 token = 4; row 2: empty.
LOSS = [[1.0, 2.0, 3.0, 9.0], [4.0, 7.0, 7.0, 7.0], [5.0, 5.0, 5.0, 5.0]]
LMASK = [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token-mean", 10.0 / 4.0),
        ("seq-mean-token-sum", (6.0 + 4.0) / 2.0),  # the empty row is left out
        ("seq-mean-token-mean", (2.0 + 4.0) / 2.0),
        ("seq-mean-token-sum-norm", (6.0 + 4.0) / (3 * 4)),  # all 3 rows, default factor = L = 4
    ],
)
def test_aggregate_modes_by_hand(mode, expected):
    assert aggregate_loss(t(LOSS), t(LMASK), mode).item() == pytest.approx(expected)
    assert aggregate_loss(t(LOSS), t(LMASK).bool(), mode).item() == pytest.approx(expected)


def test_aggregate_norm_uses_given_scale_factor():
    got = aggregate_loss(t(LOSS), t(LMASK), "seq-mean-token-sum-norm", loss_scale_factor=10)
    assert got.item() == pytest.approx(10.0 / (3 * 10))
    # the factor matters only to the -norm mode
    assert aggregate_loss(t(LOSS), t(LMASK), "token-mean", loss_scale_factor=10).item() == pytest.approx(2.5)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_aggregate_gradient_weights(mode):
    loss = t(LOSS).requires_grad_(True)
    aggregate_loss(loss, t(LMASK), mode).backward()
    g = loss.grad
    expected_rows = {
        "token-mean": [1 / 4, 1 / 4],
        "seq-mean-token-sum": [1 / 2, 1 / 2],
        "seq-mean-token-mean": [1 / 6, 1 / 2],
        "seq-mean-token-sum-norm": [1 / 12, 1 / 12],
    }[mode]
    assert g[0, :3].tolist() == pytest.approx([expected_rows[0]] * 3)
    assert g[1, 0].item() == pytest.approx(expected_rows[1])
    assert g[t(LMASK) == 0].abs().sum().item() == 0.0  # masked positions get no gradient


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_aggregate_empty_mask_and_empty_batch(mode):
    assert aggregate_loss(t(LOSS), torch.zeros(3, 4), mode).item() == 0.0
    assert aggregate_loss(torch.zeros(0, 4, dtype=D), torch.zeros(0, 4), mode).item() == 0.0


def test_aggregate_equal_lengths_modes_agree():
    torch.manual_seed(0)
    loss = torch.randn(5, 7, dtype=D)
    mask = torch.ones(5, 7)
    tm = aggregate_loss(loss, mask, "token-mean")
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(tm.item())
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx(7 * tm.item())
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(tm.item())


def test_aggregate_errors():
    with pytest.raises(ValueError, match=r"unknown loss_agg_mode 'mean'.*token-mean.*seq-mean-token-sum-norm"):
        aggregate_loss(t(LOSS), t(LMASK), "mean")
    with pytest.raises(ValueError, match="loss_mat and mask"):
        aggregate_loss(t(LOSS), t(LMASK)[:, :3])
    with pytest.raises(ValueError, match="loss_mat must be 2-D"):
        aggregate_loss(t([1.0, 2.0]), t([1, 1]))
    with pytest.raises(ValueError, match="loss_scale_factor"):
        aggregate_loss(t(LOSS), t(LMASK), "seq-mean-token-sum-norm", loss_scale_factor=0)
    with pytest.raises(ValueError, match="loss_scale_factor"):
        aggregate_loss(t(LOSS), t(LMASK), "seq-mean-token-sum-norm", loss_scale_factor=float("nan"))
    with pytest.raises(TypeError, match="loss_mat"):
        aggregate_loss(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2))


# --------------------------------------------------------------------------------------------------------------
# policy_loss
# --------------------------------------------------------------------------------------------------------------


def _policy_case():
    # Four positions with ratios 1.1 (inside), 1.5 (above 1+0.2), 0.5 (below 1-0.2), 0.9 (inside), one padding.
    ratios = [[1.1, 1.5, 0.5, 0.9, 7.0]]
    old = t([[-1.0, -2.0, -0.5, -3.0, -1.0]])
    new = (old + torch.log(t(ratios))).requires_grad_(True)
    mask = t([[1, 1, 1, 1, 0]])
    return old, new, mask


def test_policy_loss_positive_advantage_by_hand():
    old, new, mask = _policy_case()
    loss, m = policy_loss(new, old, t([2.0]), mask)
    # A = 2 > 0: per position -A * min(r, clip(r)) -> -2*1.1, -2*1.2 (clipped), -2*0.5, -2*0.9
    expected = -2.0 * (1.1 + 1.2 + 0.5 + 0.9) / 4
    assert loss.item() == pytest.approx(expected)
    assert m["clip_fraction"] == pytest.approx(0.25)
    assert m["clip_fraction_lower"] == 0.0
    assert m["approx_kl"] == pytest.approx(-sum(math.log(r) for r in (1.1, 1.5, 0.5, 0.9)) / 4)
    assert m["ratio_mean"] == pytest.approx((1.1 + 1.5 + 0.5 + 0.9) / 4)
    assert m["ratio_min"] == pytest.approx(0.5)
    assert m["ratio_max"] == pytest.approx(1.5)  # the padded ratio 7 is not seen
    loss.backward()
    # d/dlogp of -A*r/4 is -A*r/4; the clipped position (r=1.5) and the padding get zero gradient
    assert new.grad[0].tolist() == pytest.approx([-2 * 1.1 / 4, 0.0, -2 * 0.5 / 4, -2 * 0.9 / 4, 0.0])


def test_policy_loss_negative_advantage_by_hand():
    old, new, mask = _policy_case()
    loss, m = policy_loss(new, old, t([-1.0]), mask)
    # A = -1: per position max(r, clip(r)) -> 1.1, 1.5, 0.8 (clipped), 0.9
    assert loss.item() == pytest.approx((1.1 + 1.5 + 0.8 + 0.9) / 4)
    assert m["clip_fraction"] == pytest.approx(0.25)
    loss.backward()
    assert new.grad[0].tolist() == pytest.approx([1.1 / 4, 1.5 / 4, 0.0, 0.9 / 4, 0.0])


def test_policy_loss_clip_higher_is_asymmetric():
    old, new, mask = _policy_case()
    # with clip_high = 0.6 the ratio 1.5 is no longer clipped for A > 0; 0.5 is still below 1 - 0.2
    loss, m = policy_loss(new, old, t([1.0]), mask, clip_low=0.2, clip_high=0.6)
    assert loss.item() == pytest.approx(-(1.1 + 1.5 + 0.5 + 0.9) / 4)
    assert m["clip_fraction"] == 0.0
    loss, m = policy_loss(new, old, t([-1.0]), mask, clip_low=0.6, clip_high=0.2)
    assert loss.item() == pytest.approx((1.1 + 1.5 + 0.5 + 0.9) / 4)
    assert m["clip_fraction"] == 0.0


def test_policy_loss_dual_clip_by_hand():
    old = t([[0.0, 0.0, 0.0, 0.0]])
    ratios = [5.0, 2.0, 5.0, 0.5]
    new = torch.log(t([ratios])).requires_grad_(True)
    adv = t([[-1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    loss, m = policy_loss(new, old, adv, mask, dual_clip=3.0)
    # pos0: A<0, r=5: max(5, 1.2)=5 -> min(5, 3)=3 (dual clip); pos1: 2 (< 3, kept); pos2: A>0, r=5 -> -1.2;
    # pos3: A<0, r=0.5 -> max(0.5, 0.8) = 0.8
    assert loss.item() == pytest.approx((3.0 + 2.0 - 1.2 + 0.8) / 4)
    assert m["clip_fraction_lower"] == pytest.approx(0.25)
    assert m["clip_fraction"] == pytest.approx(0.5)  # pos2 (upper clip) and pos3 (lower clip)
    loss.backward()
    assert new.grad[0].tolist() == pytest.approx([0.0, 2.0 / 4, 0.0, 0.0])
    # without dual clip, position 0 keeps its gradient
    new2 = new.detach().clone().requires_grad_(True)
    loss2, m2 = policy_loss(new2, old, adv, mask)
    assert loss2.item() == pytest.approx((5.0 + 2.0 - 1.2 + 0.8) / 4)
    assert m2["clip_fraction_lower"] == 0.0
    loss2.backward()
    assert new2.grad[0, 0].item() == pytest.approx(5.0 / 4)


def test_policy_loss_on_policy_gradient_is_minus_advantage():
    # at ratio 1 nothing is clipped and d loss / d log_prob = -A * mask / n_tokens (token-mean)
    torch.manual_seed(1)
    lp = torch.randn(3, 6, dtype=D)
    new = lp.clone().requires_grad_(True)
    adv = torch.randn(3, 6, dtype=D)
    mask = (torch.rand(3, 6) > 0.3).to(D)
    mask[0, 0] = 1
    loss, m = policy_loss(new, lp, adv, mask)
    loss.backward()
    assert torch.allclose(new.grad, -adv * mask / mask.sum())
    assert m["clip_fraction"] == 0.0 and m["approx_kl"] == 0.0 and m["ratio_mean"] == pytest.approx(1.0)


def test_policy_loss_sequence_advantages_broadcast():
    torch.manual_seed(2)
    old = torch.randn(4, 5, dtype=D)
    new = old + 0.3 * torch.randn(4, 5, dtype=D)
    mask = (torch.rand(4, 5) > 0.2).to(D)
    adv = torch.randn(4, dtype=D)
    for mode in LOSS_AGG_MODES:
        a, ma = policy_loss(new, old, adv, mask, loss_agg_mode=mode, dual_clip=2.5)
        b, mb = policy_loss(new, old, adv[:, None].expand(4, 5), mask, loss_agg_mode=mode, dual_clip=2.5)
        c, _ = policy_loss(new, old, adv[:, None], mask, loss_agg_mode=mode, dual_clip=2.5)
        assert a.item() == pytest.approx(b.item()) and a.item() == pytest.approx(c.item())
        assert ma == pytest.approx(mb)


def test_policy_loss_agg_mode_is_passed_on():
    old, new, mask = _policy_case()
    loss, _ = policy_loss(new, old, t([2.0]), mask, loss_agg_mode="seq-mean-token-sum-norm", loss_scale_factor=8)
    assert loss.item() == pytest.approx(-2.0 * (1.1 + 1.2 + 0.5 + 0.9) / 8)


def test_policy_loss_extreme_log_ratio_is_finite():
    old = t([[0.0, 0.0]])
    new = t([[200.0, -200.0]]).requires_grad_(True)
    loss, m = policy_loss(new, old, t([[-1.0, 1.0]]), torch.ones(1, 2))
    assert math.isfinite(loss.item()) and all(math.isfinite(v) for v in m.values())
    loss.backward()
    assert torch.isfinite(new.grad).all()


def test_policy_loss_empty_mask_and_batch():
    old, new, _ = _policy_case()
    loss, m = policy_loss(new, old, t([1.0]), torch.zeros(1, 5))
    assert loss.item() == 0.0
    assert m == {"clip_fraction": 0.0, "clip_fraction_lower": 0.0, "approx_kl": 0.0, "ratio_mean": 1.0,
                 "ratio_min": 1.0, "ratio_max": 1.0}
    e = torch.zeros(0, 5, dtype=D)
    loss, m = policy_loss(e.clone().requires_grad_(True), e, torch.zeros(0, dtype=D), torch.zeros(0, 5))
    assert loss.item() == 0.0 and m["ratio_mean"] == 1.0


def test_policy_loss_float32_and_bfloat16():
    old = torch.zeros(2, 3)
    new = torch.full((2, 3), 0.1)
    loss32, _ = policy_loss(new, old, torch.ones(2), torch.ones(2, 3))
    lossbf, _ = policy_loss(new.bfloat16(), old.bfloat16(), torch.ones(2).bfloat16(), torch.ones(2, 3))
    assert loss32.dtype == torch.float32 and loss32.item() == pytest.approx(-math.exp(0.1), rel=1e-6)
    assert lossbf.item() == pytest.approx(-math.exp(0.1), rel=1e-2)


def test_policy_loss_errors():
    lp = torch.zeros(2, 3)
    ok = dict(log_prob=lp, old_log_prob=lp, advantages=torch.zeros(2), response_mask=torch.ones(2, 3))
    policy_loss(**ok)
    with pytest.raises(ValueError, match="log_prob and old_log_prob"):
        policy_loss(**{**ok, "old_log_prob": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="log_prob and response_mask"):
        policy_loss(**{**ok, "response_mask": torch.ones(3, 3)})
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(**{**ok, "advantages": torch.zeros(3)})
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(**{**ok, "advantages": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="log_prob must be 2-D"):
        policy_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match=r"dual_clip must be > 1"):
        policy_loss(**ok, dual_clip=1.0)
    with pytest.raises(ValueError, match=r"dual_clip must be > 1"):
        policy_loss(**ok, dual_clip=0.5)
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(**ok, dual_clip="3")
    with pytest.raises(ValueError, match="clip_low"):
        policy_loss(**ok, clip_low=1.0)
    with pytest.raises(ValueError, match="clip_low"):
        policy_loss(**ok, clip_low=-0.1)
    with pytest.raises(ValueError, match="clip_high"):
        policy_loss(**ok, clip_high=-0.1)
    with pytest.raises(ValueError, match="clip_high"):
        policy_loss(**ok, clip_high=float("inf"))
    with pytest.raises(ValueError, match=r"unknown loss_agg_mode 'sum'.*token-mean"):
        policy_loss(**ok, loss_agg_mode="sum")
    with pytest.raises(TypeError, match="log_prob"):
        policy_loss(**{**ok, "log_prob": torch.zeros(2, 3, dtype=torch.int64)})
    with pytest.raises(TypeError, match="advantages"):
        policy_loss(**{**ok, "advantages": [0.0, 0.0]})


# --------------------------------------------------------------------------------------------------------------
# kl_penalty / kl_loss
# --------------------------------------------------------------------------------------------------------------


def test_kl_penalty_kinds_by_hand():
    lp, ref = t([-1.0, -2.0, -0.5]), t([-1.5, -1.0, -0.5])
    d = [0.5, -1.0, 0.0]
    for kind in ("k1", "kl"):
        assert kl_penalty(lp, ref, kind).tolist() == pytest.approx(d)
    assert kl_penalty(lp, ref, "abs").tolist() == pytest.approx([abs(x) for x in d])
    for kind in ("k2", "mse"):
        assert kl_penalty(lp, ref, kind).tolist() == pytest.approx([x * x / 2 for x in d])
    for kind in ("k3", "low_var_kl"):
        assert kl_penalty(lp, ref, kind).tolist() == pytest.approx([math.exp(-x) + x - 1 for x in d])
    assert kl_penalty(lp, ref).tolist() == pytest.approx([math.exp(-x) + x - 1 for x in d])


def test_kl_estimators_are_unbiased_on_a_known_distribution():
    # pi = softmax(a), pi_ref = softmax(b); exact expectation over tokens sampled from pi
    a, b = t([0.3, -1.0, 2.0, 0.0]), t([1.0, 0.5, -0.5, 0.0])
    lp, lref = torch.log_softmax(a, 0), torch.log_softmax(b, 0)
    p = lp.exp()
    true_kl = (p * (lp - lref)).sum().item()
    for kind in ("k1", "k3"):
        assert (p * kl_penalty(lp, lref, kind)).sum().item() == pytest.approx(true_kl)


def test_low_var_kl_is_clamped_like_verl():
    lp = t([0.0, 0.0, 0.0, 0.0])
    ref = t([5.0, 30.0, -30.0, -5.0])  # d = -5, -30, 30, 5
    got = kl_penalty(lp, ref, "low_var_kl")
    assert got[0].item() == 10.0  # exp(5) - 5 - 1 = 142.4 -> clamped to 10
    assert got[1].item() == 10.0  # -d clamped to 20 first, then the estimate to 10
    assert got[2].item() == 10.0  # -d clamped to -20: exp(-20) + 19 -> clamped to 10
    assert got[3].item() == pytest.approx(math.exp(-5) + 5 - 1)  # 4.007: inside the clamp
    assert (got >= 0).all()


def test_low_var_kl_clamped_positions_get_zero_gradient():
    lp = t([0.0, 0.0, 0.0]).requires_grad_(True)
    ref = t([5.0, 0.5, -30.0])
    kl_penalty(lp, ref, "k3").sum().backward()
    # d/dlp (exp(ref - lp) - (ref - lp) - 1) = 1 - exp(ref - lp), except where a clamp is active
    assert lp.grad.tolist() == pytest.approx([0.0, 1 - math.exp(0.5), 0.0])


def test_kl_loss_by_hand():
    lp = t([[-1.0, -2.0, 9.0], [-0.5, -0.5, -0.5]]).requires_grad_(True)
    ref = t([[-1.5, -1.0, 0.0], [-0.5, -0.4, 3.0]])
    mask = t([[1, 1, 0], [1, 1, 0]])
    loss, m = kl_loss(lp, ref, mask, kind="k2")
    per = [0.125, 0.5, 0.0, 0.005]
    assert loss.item() == pytest.approx(sum(per) / 4)
    assert m["kl_loss"] == pytest.approx(loss.item())
    assert m["kl_mean"] == pytest.approx(sum(per) / 4)
    assert m["kl_max"] == pytest.approx(0.5)
    loss.backward()
    assert torch.allclose(lp.grad, t([[0.5 / 4, -1.0 / 4, 0.0], [0.0, -0.1 / 4, 0.0]]))
    loss2, m2 = kl_loss(lp, ref, mask, kind="k1", loss_agg_mode="seq-mean-token-sum")
    assert loss2.item() == pytest.approx(((0.5 - 1.0) + (0.0 - 0.1)) / 2)
    assert m2["kl_mean"] == pytest.approx((0.5 - 1.0 + 0.0 - 0.1) / 4)
    assert m2["kl_max"] == pytest.approx(0.5)


def test_kl_loss_default_is_low_var_kl_token_mean_and_handles_empty_mask():
    lp, ref = t([[0.0, -1.0]]), t([[-0.5, -1.0]])
    loss, _ = kl_loss(lp, ref, torch.ones(1, 2))
    assert loss.item() == pytest.approx((math.exp(-0.5) + 0.5 - 1) / 2)
    loss, m = kl_loss(lp, ref, torch.zeros(1, 2))
    assert loss.item() == 0.0 and m == {"kl_loss": 0.0, "kl_mean": 0.0, "kl_max": 0.0}


def test_kl_errors():
    a = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"unknown kl kind 'k4'.*k1.*low_var_kl"):
        kl_penalty(a, a, "k4")
    with pytest.raises(ValueError, match="unknown kl kind"):
        kl_loss(a, a, torch.ones(2, 3), kind="full")
    with pytest.raises(ValueError, match="log_prob and ref_log_prob"):
        kl_penalty(a, torch.zeros(3, 2), "k1")
    with pytest.raises(ValueError, match="log_prob and mask"):
        kl_loss(a, a, torch.ones(2, 2))
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        kl_loss(a, a, torch.ones(2, 3), loss_agg_mode="seq-sum")
    assert set(KL_KINDS) == {"k1", "kl", "abs", "k2", "mse", "k3", "low_var_kl"}


# --------------------------------------------------------------------------------------------------------------
# entropy_from_logits
# --------------------------------------------------------------------------------------------------------------


def test_entropy_matches_categorical():
    torch.manual_seed(3)
    logits = 3.0 * torch.randn(2, 5, 17, dtype=D)
    got = entropy_from_logits(logits)
    assert got.shape == (2, 5)
    assert torch.allclose(got, torch.distributions.Categorical(logits=logits).entropy(), atol=1e-12)
    assert torch.allclose(entropy_from_logits(logits, chunk_size=3), got, atol=1e-12)


def test_entropy_by_hand_and_extreme_logits():
    assert entropy_from_logits(t([0.0, 0.0, 0.0, 0.0])).item() == pytest.approx(math.log(4))
    # shift invariance and no overflow with huge logits
    huge = t([[1000.0, 1000.0], [-1000.0, 1000.0]])
    got = entropy_from_logits(huge)
    assert got[0].item() == pytest.approx(math.log(2)) and got[1].item() == pytest.approx(0.0, abs=1e-12)
    # -inf logits (banned tokens) contribute nothing and give no nan
    banned = t([0.0, float("-inf"), 0.0])
    assert entropy_from_logits(banned).item() == pytest.approx(math.log(2))
    x = banned.clone().requires_grad_(True)
    entropy_from_logits(x).backward()
    assert torch.isfinite(x.grad).all()


def test_entropy_gradient_matches_categorical():
    torch.manual_seed(4)
    base = torch.randn(3, 11, dtype=D)
    a, b = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    w = torch.randn(3, dtype=D)
    (entropy_from_logits(a, chunk_size=2) * w).sum().backward()
    (torch.distributions.Categorical(logits=b).entropy() * w).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-12)
    assert torch.autograd.gradcheck(entropy_from_logits, (base.clone().requires_grad_(True),))


def test_entropy_low_precision_is_computed_in_float32():
    torch.manual_seed(5)
    logits = torch.randn(4, 50)
    got = entropy_from_logits(logits.bfloat16())
    assert got.dtype == torch.float32
    ref = torch.distributions.Categorical(logits=logits.bfloat16().float()).entropy()
    assert torch.allclose(got, ref, atol=1e-5)


def test_entropy_errors():
    with pytest.raises(TypeError, match="logits"):
        entropy_from_logits(torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="logits"):
        entropy_from_logits(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="logits"):
        entropy_from_logits(torch.tensor(1.0))
    with pytest.raises(ValueError, match="chunk_size"):
        entropy_from_logits(torch.zeros(2, 3), chunk_size=0)


def test_high_entropy_mask_is_trl_top_entropy_quantile():
    from ktae.core.losses import high_entropy_mask

    g = torch.Generator().manual_seed(0)
    for q in (0.2, 0.5, 0.9, 1.0):
        entropy = torch.rand(6, 9, generator=g)
        mask = (torch.rand(6, 9, generator=g) > 0.3).long()
        # TRL's GRPOTrainer.get_high_entropy_mask on one process
        threshold = torch.quantile(entropy[mask.bool()].float(), 1 - q)
        expected = ((entropy * mask.float()) >= threshold) & mask.bool()
        got = high_entropy_mask(entropy, mask, q)
        assert torch.equal(got, expected)
        kept = int(got.sum())
        assert abs(kept - q * int(mask.sum())) <= 1
    assert high_entropy_mask(entropy, mask, 1.0).equal(mask.bool())
    assert not high_entropy_mask(entropy, torch.zeros_like(mask), 0.2).any()
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="top_quantile"):
            high_entropy_mask(entropy, mask, bad)
    with pytest.raises(ValueError, match="same shape"):
        high_entropy_mask(entropy, mask[:, :3], 0.2)


def test_entropy_from_log_probs_is_entropy_from_logits():
    from ktae.core.losses import entropy_from_log_probs

    logits = torch.randn(3, 5, 11, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logits[0, 0, :4] = float("-inf")                      # banned tokens
    log_p = torch.log_softmax(logits, dim=-1)
    assert torch.equal(entropy_from_log_probs(log_p), entropy_from_logits(logits))
    assert torch.equal(entropy_from_log_probs(log_p, chunk_size=4), entropy_from_logits(logits))
    with pytest.raises(ValueError, match="log_probs"):
        entropy_from_log_probs(torch.zeros(3, 0))
