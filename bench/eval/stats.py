"""Intervals of the verdict: a Student-t interval over seeds, and a prompt bootstrap where it cannot be.

**The verdict's interval is seed-level.** A statistic (a faithfulness, or the paired difference
F(mask) − F(other) of two methods scored on the same test prompts) is computed per seed from the
means over that seed's test prompts; the estimate is the mean over the S seeds and the 95%
interval is mean ± t_{0.975, S−1} · sd / √S over the per-seed values (:func:`seed_interval`). The
seed is the unit that varies: a seed changes the data draw, the train/test split and each
method's own randomness, so the methods' true difference differs from seed to seed, and the
per-seed value already carries its prompts' noise. The t interval is exact for normal per-seed
values whatever the split between prompt noise and seed-to-seed variation.

**Why not the two-level bootstrap** (:meth:`Bootstrap.combine`, seeds resampled, then prompts inside
each): it over-covers when seeds agree (it counts the prompt noise twice) and under-covers when they
do not: resampling S seeds estimates their spread with divisor S rather than S − 1, and its
percentiles act like the normal quantile 1.96 where 3 seeds need t_{0.975, 2} = 4.30. Simulated
with 3 seeds × 128 prompts, prompt SD 1, per-seed true differences N(0, τ²), 300 trials, its 95%
interval covered 1.000 / 0.963 / 0.833 / 0.783 at τ = 0 / 0.1 / 0.3 / 1.0, while the t interval
over the seeds covered 0.95–0.98. tests/test_stats.py measures both: the t interval over 5 seeds
covers 0.94–0.96 at τ = 0 … 3 (2000 trials each), the bootstrap over 3 seeds 0.72 at τ = 1 (400).
The price of honesty with 3 seeds is width: t_{0.975, 2} / √3 = 2.48 seed SDs each side, so a
difference of the same sign in all 3 seeds can still be "tied".

**One seed**: there is no seed-level interval. :func:`interval` then falls back to the bootstrap
over that seed's test prompts, which says nothing about seed-to-seed variation; the report says
:data:`ONE_SEED`. The bootstrap also remains for statistics that are not a plain per-seed mean
(the interpolated size reaching a faithfulness level, which may be "not reached" in a seed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

N_BOOT = 2000
LEVEL = 0.95
ONE_SEED = "1 seed: prompt-level interval only"


class Bootstrap:
    """Shared prompt-resampling plan for one task: the same prompt draws for every statistic.

    Used for the one-seed fallback of :func:`interval` and for the level sizes; its two-level
    :meth:`combine` is no longer the verdict's interval (see the module docstring).
    ``n_prompts`` maps seed -> number of test prompts of that seed.
    """

    def __init__(self, n_prompts: Mapping[int, int], n_boot: int = N_BOOT, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.seeds = sorted(n_prompts)
        self.n_boot = n_boot
        self.idx = {s: rng.integers(0, n, size=(n_boot, n)) for s, n in n_prompts.items()}

    def means(self, seed: int, values: np.ndarray) -> tuple[float, np.ndarray]:
        """(mean over all prompts, the mean in each replicate ``[n_boot]``)."""
        v = np.asarray(values, dtype=float)
        return float(v.mean()), v[self.idx[seed]].mean(1)

    def combine(self, per_seed: Mapping[int, tuple[float, np.ndarray]]) -> tuple[float, float, float]:
        """Average a per-seed statistic over seeds: (estimate, low, high) of the two-level bootstrap's
        95% interval (anti-conservative when seeds disagree: use :func:`interval` for a verdict).

        ``per_seed[s] = (value on all prompts, value in each replicate)``; seeds missing from
        ``per_seed`` are left out (e.g. a size that one seed's universe does not reach).
        """
        seeds = [s for s in self.seeds if s in per_seed]
        if not seeds:
            return (float("nan"),) * 3
        point = float(np.mean([per_seed[s][0] for s in seeds]))
        boots = np.stack([np.asarray(per_seed[s][1], dtype=float) for s in seeds], axis=1)  # [B, S]
        draw = np.random.default_rng(len(seeds)).integers(0, len(seeds), size=(self.n_boot, len(seeds)))
        reps = np.take_along_axis(boots, draw, axis=1).mean(1)
        reps = reps[np.isfinite(reps)]
        if not len(reps):
            return point, float("nan"), float("nan")
        a = (1 - LEVEL) / 2
        return point, float(np.quantile(reps, a)), float(np.quantile(reps, 1 - a))


def faithfulness_stat(boot: Bootstrap, seed: int, ld: np.ndarray, sae: np.ndarray,
                      empty: np.ndarray) -> tuple[float, np.ndarray]:
    """Per-seed normalised faithfulness (m(C) − m(∅)) / (m(M+SAE) − m(∅)) and its replicates."""
    c, cb = boot.means(seed, ld)
    s, sb = boot.means(seed, sae)
    e, eb = boot.means(seed, empty)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (c - e) / (s - e), (cb - eb) / (sb - eb)


def paired(a: tuple[float, np.ndarray], b: tuple[float, np.ndarray],
           op: Callable[[np.ndarray, np.ndarray], np.ndarray] = np.subtract) -> tuple[float, np.ndarray]:
    """Combine two per-seed statistics computed on the same replicates (paired)."""
    return float(op(np.asarray(a[0]), np.asarray(b[0]))), op(a[1], b[1])


def seed_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval mean ± t_{(1+level)/2, S−1} · sd / √S over per-seed values.

    Non-finite values (a seed whose statistic is undefined) are left out; with fewer than two
    finite values there is no seed-level interval and low/high are NaN (see :func:`interval`).
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return (float("nan"),) * 3
    est = float(v.mean())
    if len(v) < 2:
        return est, float("nan"), float("nan")
    half = float(sps.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return est, est - half, est + half


def interval(boot: Bootstrap, per_seed: Mapping[int, tuple[float, np.ndarray]]) -> tuple[float, float, float]:
    """The verdict's interval of a per-seed statistic: :func:`seed_interval` over the seeds' values,
    or, with one seed, the bootstrap over its test prompts (:data:`ONE_SEED`).

    ``per_seed[s] = (value on all prompts, value in each bootstrap replicate)``, as for
    :meth:`Bootstrap.combine`; the replicates are read only when one seed is given.
    """
    if len(per_seed) == 1:
        return boot.combine(per_seed)
    return seed_interval([p[0] for p in per_seed.values()])


def interval_kind(n_seeds: int) -> str:
    """What an interval over ``n_seeds`` seeds is, in words (a column of the report's tables)."""
    return ONE_SEED if n_seeds == 1 else f"t over {n_seeds} seeds"


def verdict_word(low: float, high: float) -> str:
    """"beats" when the interval of (A − B) lies above 0, "loses" below, else "tied"."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    if low > 0:
        return "beats"
    if high < 0:
        return "loses"
    return "tied"


def crossing_size(sizes: np.ndarray, f: np.ndarray, level: float) -> float:
    """Smallest size where F reaches ``level``, interpolated linearly in log(size) between
    evaluated sizes (NaN if never reached). Sizes must be sorted ascending. Between an empty circuit
    (size 0, where log is undefined) and the first size reaching ``level`` it is that first size, as
    when the first evaluated size reaches it: an uninformative empty point never lowers the answer."""
    above = np.nonzero(f >= level)[0]
    if not len(above):
        return float("nan")
    j = int(above[0])
    if j == 0:
        return float(sizes[0])
    if sizes[j - 1] <= 0:
        return float(sizes[j])
    x0, x1, y0, y1 = np.log(sizes[j - 1]), np.log(sizes[j]), f[j - 1], f[j]
    t = (level - y0) / (y1 - y0) if y1 != y0 else 1.0
    return float(np.exp(x0 + t * (x1 - x0)))
