"""Bootstrap intervals over prompts and seeds, and the paired comparisons of the verdict.

A statistic (a faithfulness, or a difference of two) is computed per seed from means over that
seed's test prompts, then averaged over seeds. One bootstrap replicate resamples the seeds with
replacement and, inside each seed, its test prompts with replacement; the 95% interval is the
2.5-97.5 percentile of the replicates. Comparisons are **paired**: both methods are scored on the
same resampled prompts of the same seeds (they are evaluated on the same test prompts), so the
interval of a difference is much tighter than the two intervals side by side.

With one seed only prompts are resampled: the interval then says nothing about seed-to-seed
variation, and the report says so.

This two-level bootstrap is conservative: when seeds do not really differ it counts the prompt
noise twice (at the seed level and inside each seed), so intervals over-cover (tests/test_stats.py
measures about √2 wider than the exact interval of a pooled mean). A "beats" therefore errs on the
side of "tied", never the other way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

N_BOOT = 2000
LEVEL = 0.95


class Bootstrap:
    """Shared resampling plan for one task: the same prompt draws for every statistic.

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
        """Average a per-seed statistic over seeds: (estimate, low, high) of the 95% interval.

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
