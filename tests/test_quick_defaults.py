"""A --quick run's defaults: the contestants only (the references stay out unless asked for)."""

from bench.eval.verdict import REFERENCES
from bench.run.config import DEFAULT_METHODS, QUICK_METHODS, make_config


def test_quick_runs_every_method_but_the_references():
    assert QUICK_METHODS == tuple(m for m in DEFAULT_METHODS if m not in REFERENCES)
    assert make_config(quick=True).methods == QUICK_METHODS
    assert make_config(quick=False).methods == DEFAULT_METHODS


def test_methods_given_to_a_quick_run_are_kept():
    assert make_config(quick=True, methods=("greedy", "binary_mask")).methods == ("greedy", "binary_mask")
