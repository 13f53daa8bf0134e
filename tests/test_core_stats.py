import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import fisher_exact

from ktae.core.stats import (
    arcsine_distance,
    bm25_saturation,
    fisher_exact_pvalues,
    information_gain,
    term_frequency_ratio,
)
from reference_ktae import bm25, table_stats


def _scipy_p(a, b, c, d):
    return fisher_exact([[a, b], [c, d]], alternative="two-sided").pvalue


@st.composite
def tables(draw, max_n=1024):
    n_true = draw(st.integers(0, max_n))
    n_false = draw(st.integers(0, max_n - n_true))
    a = draw(st.integers(0, n_true))
    b = draw(st.integers(0, n_false))
    return a, b, n_true - a, n_false - b


@settings(max_examples=150, deadline=None)
@given(tables(max_n=40))
def test_fisher_matches_scipy_small_groups(table):
    p = fisher_exact_pvalues(*(torch.tensor([x]) for x in table))[0].item()
    assert p == pytest.approx(_scipy_p(*table), abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(tables(max_n=1024))
def test_fisher_matches_scipy_up_to_1024(table):
    p = fisher_exact_pvalues(*(torch.tensor([x]) for x in table))[0].item()
    assert p == pytest.approx(_scipy_p(*table), abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.lists(tables(max_n=64), min_size=1, max_size=60))
def test_fisher_batch_of_mixed_margins(batch):
    cols = [torch.tensor(col) for col in zip(*batch)]
    p = fisher_exact_pvalues(*cols).numpy()
    expected = np.array([_scipy_p(*t) for t in batch])
    np.testing.assert_allclose(p, expected, rtol=0, atol=1e-9)


def test_fisher_known_values_and_shapes():
    # the classic tea-tasting table: p = 0.4857142857...
    p = fisher_exact_pvalues(torch.tensor([3]), torch.tensor([1]), torch.tensor([1]), torch.tensor([3]))
    assert p.item() == pytest.approx(34 / 70, abs=1e-12)
    # ties: a symmetric table has p = 1 exactly up to rounding
    p = fisher_exact_pvalues(torch.tensor([2]), torch.tensor([2]), torch.tensor([2]), torch.tensor([2]))
    assert p.item() == pytest.approx(1.0, abs=1e-12)
    # shape is preserved, dtype float64
    a = torch.tensor([[1, 0], [2, 3]])
    p = fisher_exact_pvalues(a, a, a, a)
    assert p.shape == (2, 2) and p.dtype == torch.float64
    assert fisher_exact_pvalues(*(torch.zeros(0, dtype=torch.long),) * 4).shape == (0,)


def test_fisher_chunked_grid_agrees(monkeypatch):
    import ktae.core.stats as stats

    rng = np.random.default_rng(1)
    batch = []
    for _ in range(200):
        nt, nf = rng.integers(0, 30, size=2)
        batch.append((rng.integers(0, nt + 1), rng.integers(0, nf + 1), nt, nf))
    a, b, nt, nf = (torch.tensor(c) for c in zip(*batch))
    whole = fisher_exact_pvalues(a, b, nt - a, nf - b)
    monkeypatch.setattr(stats, "_GRID_BUDGET", 2000)  # forces many chunks
    chunked = fisher_exact_pvalues(a, b, nt - a, nf - b)
    assert torch.equal(whole, chunked)


def test_table_checks():
    one = torch.tensor([1])
    with pytest.raises(ValueError, match="non-negative"):
        fisher_exact_pvalues(torch.tensor([-1]), one, one, one)
    with pytest.raises(TypeError, match="integer"):
        fisher_exact_pvalues(torch.tensor([1.0]), one, one, one)
    with pytest.raises(ValueError, match="shape"):
        information_gain(torch.tensor([1, 2]), one, one, one)


def test_information_gain_arcsine_against_reference():
    rng = np.random.default_rng(0)
    for _ in range(300):
        nt, nf = int(rng.integers(0, 20)), int(rng.integers(0, 20))
        if nt + nf == 0:
            continue
        a, b = int(rng.integers(0, nt + 1)), int(rng.integers(0, nf + 1))
        ref = table_stats(a, b, nt, nf)
        t = lambda x: torch.tensor([x])  # noqa: E731
        assert information_gain(t(a), t(b), t(nt - a), t(nf - b)).item() == pytest.approx(ref["info_gain"], abs=1e-12)
        assert arcsine_distance(t(a), t(b), t(nt), t(nf)).item() == pytest.approx(ref["arcsine"], abs=1e-12)


def test_information_gain_hand_cases():
    t = lambda *x: [torch.tensor([v]) for v in x]  # noqa: E731
    # perfectly predictive token: IG = H(Y) = 1 bit for a balanced group
    assert information_gain(*t(4, 0, 0, 4)).item() == pytest.approx(1.0)
    # token everywhere: no information
    assert information_gain(*t(4, 4, 0, 0)).item() == pytest.approx(0.0, abs=1e-15)
    # empty table
    assert information_gain(*t(0, 0, 0, 0)).item() == 0.0
    assert arcsine_distance(*t(3, 0, 3, 5)).item() == pytest.approx(math.pi / 2)


def test_bm25_and_tf_ratio():
    assert bm25_saturation(torch.tensor(0.5), 100.0, 100.0).item() == pytest.approx(bm25(0.5, 100, 100))
    r = term_frequency_ratio(torch.tensor([3]), torch.tensor([1]), torch.tensor([30]), torch.tensor([50]))
    tf_t, tf_f = bm25(3 / 30, 30, 40), bm25(1 / 50, 50, 40)
    assert r.item() == pytest.approx(tf_t / (tf_f + 1e-5) - tf_f / (tf_t + 1e-5), rel=1e-12)
    # no correct tokens at all: frequency 0, no division by zero
    r = term_frequency_ratio(torch.tensor([0]), torch.tensor([2]), torch.tensor([0]), torch.tensor([10]))
    assert torch.isfinite(r).all() and r.item() < 0
