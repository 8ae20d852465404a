"""The bottleneck property the protocol rests on (README, "What a circuit is").

With the SAE error term dropped (the default, as in the paper), the residual stream after each
spliced site is the SAE's decoding of its latents, edited: everything upstream reaches the logits
only through the latents kept at that site. So a circuit with no node at a site gains nothing from
its nodes upstream of it, and one with no node at the last site has F = 0 exactly. A method that
picks nodes one at a time by their own effect can therefore score F = 0 at small sizes; choosing
nodes jointly (the mask's objective) is rewarded. With the error term kept the property fails.
The checks are exact (bitwise equal logit differences): replaced latents are selected, not computed.
"""

from __future__ import annotations

import pytest
import torch

from bench.run.config import make_config
from bench.run.runner import _setup


def _setup_for(policy: str):
    cfg = make_config(tasks=("dict_keyerror",), seeds=(0,), n_train=16, n_test=16, error_policy=policy)
    return _setup(cfg, "dict_keyerror", 0)


def _circuit(universe, rng, p=0.05):
    return {s: m & (torch.rand(m.shape, generator=rng) < p) for s, m in universe.items()}


@pytest.mark.parametrize("site_index", [1, 2])  # the first site has nothing upstream to test
def test_with_the_error_dropped_nothing_upstream_of_an_empty_site_matters(site_index):
    st = _setup_for("drop")
    ev, sites = st.evaluator, list(st.universe)
    rng = torch.Generator().manual_seed(site_index)
    c = _circuit(st.universe, rng)
    c[sites[site_index]] = torch.zeros_like(c[sites[site_index]])  # no node at this site
    upstream_dropped = {s: (torch.zeros_like(m) if i < site_index else m) for i, (s, m) in enumerate(c.items())}
    assert any(bool(c[s].any()) for s in sites[:site_index])  # there are upstream nodes to drop
    a, b = ev.lds([c, upstream_dropped], "test")
    assert torch.equal(a, b)  # bitwise: the empty site cuts every upstream path


def test_with_the_error_dropped_a_circuit_without_the_last_site_is_the_empty_circuit():
    st = _setup_for("drop")
    ev, last = st.evaluator, list(st.universe)[-1]
    c = {s: m.clone() for s, m in st.universe.items()}
    c[last] = torch.zeros_like(c[last])  # every node kept except the last SAE's
    ld = ev.lds([c], "test")[0]
    assert torch.equal(ld, ev.per_prompt["test"]["m_empty"])
    assert ev.faithfulness(float(ld.mean()), "test")["faithfulness_sae_norm"] == 0.0


def test_with_the_error_kept_upstream_nodes_reach_past_an_empty_site():
    st = _setup_for("keep")
    ev, sites = st.evaluator, list(st.universe)
    c = {s: m.clone() for s, m in st.universe.items()}
    c[sites[1]] = torch.zeros_like(c[sites[1]])
    upstream_dropped = {**c, sites[0]: torch.zeros_like(c[sites[0]])}
    a, b = ev.lds([c, upstream_dropped], "test")
    assert (a - b).abs().max() > 1e-3  # the error term carries upstream information past the site
