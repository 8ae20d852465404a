"""Bootstrap intervals and paired verdicts against hand-computable cases and a coverage check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.eval.stats import Bootstrap, crossing_size, faithfulness_stat, paired, verdict_word


def test_constant_values_give_a_zero_width_interval():
    b = Bootstrap({0: 10, 1: 10}, n_boot=200)
    per = {s: b.means(s, np.full(10, 3.0)) for s in (0, 1)}
    assert b.combine(per) == (3.0, 3.0, 3.0)


def test_paired_difference_is_exact_for_a_constant_shift():
    """F_A − F_B where A's logit difference is B's plus 1 on every prompt: exactly 1 / (m_sae − m_empty)."""
    rng = np.random.default_rng(0)
    b = Bootstrap({0: 50, 1: 40}, n_boot=300)
    per = {}
    for s, n in ((0, 50), (1, 40)):
        base = rng.normal(2.0, 1.0, n)
        sae, empty = np.full(n, 5.0), np.full(n, 1.0)
        per[s] = paired(faithfulness_stat(b, s, base + 1.0, sae, empty), faithfulness_stat(b, s, base, sae, empty))
    est, lo, hi = b.combine(per)
    assert est == pytest.approx(0.25) and lo == pytest.approx(0.25) and hi == pytest.approx(0.25)
    assert verdict_word(lo, hi) == "beats"


def test_identical_methods_are_tied_and_verdict_words():
    assert verdict_word(-0.1, 0.2) == "tied"
    assert verdict_word(0.01, 0.2) == "beats"
    assert verdict_word(-0.3, -0.01) == "loses"
    assert verdict_word(math.nan, 1.0) == "n/a"


def test_interval_is_conservative_but_not_wildly_wide():
    """Resampling seeds and then prompts inside them counts the prompt noise twice when seeds do not
    differ (a known property of the hierarchical bootstrap): intervals over-cover. Measured here on
    3 seeds × 60 normal prompts with a common mean: coverage must be at least nominal, and the
    half-width at most 1.6× the exact 1.96 σ / √N of the pooled mean (√2 ≈ 1.41 expected)."""
    rng = np.random.default_rng(1)
    hits, widths = 0, []
    trials = 200
    for t in range(trials):
        b = Bootstrap({s: 60 for s in range(3)}, n_boot=400, seed=t)
        per = {s: b.means(s, rng.normal(0.0, 1.0, 60)) for s in range(3)}
        _, lo, hi = b.combine(per)
        hits += lo <= 0.0 <= hi
        widths.append((hi - lo) / 2)
    assert hits / trials >= 0.93
    assert np.mean(widths) <= 1.6 * 1.96 / math.sqrt(180)


def test_seed_to_seed_differences_widen_the_interval():
    """When the seeds' true means differ, the interval must reflect it (prompt resampling alone would not)."""
    rng = np.random.default_rng(2)
    b = Bootstrap({s: 100 for s in range(3)}, n_boot=500)
    same = b.combine({s: b.means(s, rng.normal(0.0, 1.0, 100)) for s in range(3)})
    apart = b.combine({s: b.means(s, rng.normal(2.0 * s, 1.0, 100)) for s in range(3)})
    assert (apart[2] - apart[1]) > 3 * (same[2] - same[1])


def test_crossing_size_interpolates_in_log_size():
    sizes = np.array([1.0, 10.0, 100.0])
    assert crossing_size(sizes, np.array([0.0, 0.5, 1.0]), 0.75) == pytest.approx(math.sqrt(1000))
    assert crossing_size(sizes, np.array([0.95, 0.5, 1.0]), 0.9) == 1.0
    assert math.isnan(crossing_size(sizes, np.array([0.1, 0.2, 0.3]), 0.9))
    # from an empty circuit (log 0 undefined): the first size reaching the level, never NaN, and the
    # same answer as without the empty point
    assert crossing_size(np.array([0.0, 10.0, 100.0]), np.array([0.0, 0.95, 1.0]), 0.9) == 10.0
    assert crossing_size(np.array([10.0, 100.0]), np.array([0.95, 1.0]), 0.9) == 10.0
