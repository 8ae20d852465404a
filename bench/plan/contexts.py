"""Stand-in task contexts for the plan: random prompts of the plan's shape on the planned model
(the meta device), set up by the harness's own functions (ablation values, candidates)."""

from __future__ import annotations


def _data(n: int, pos: int, vocab: int, seed: int = 0):
    import torch

    from bench.data import TaskData

    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, vocab, (n, pos), generator=g)
    clean[:, 0] = 0
    patch = clean.clone()
    patch[:, pos // 2] = (patch[:, pos // 2] + 1) % vocab
    return TaskData("plan", "0", clean, patch, torch.full((n,), 1), torch.full((n,), 2), ["plan"] * n, "train")


def make_context(sp, st, n: int):
    """A method context on ``sp`` with ``n`` train prompts at the settings ``st`` (a
    :class:`bench.plan.estimate.Settings`: prompt length, ablation), set up by the harness's own functions."""
    from bench.api import MethodContext
    from bench.model.ablation import candidates, make_replacement
    from bench.plan.simulate import memoised

    cache = sp.__dict__.setdefault("_plan_contexts", {})
    key = (n, st.seq_len, st.ablation)
    if key not in cache:
        data = _data(n, st.seq_len, sp.model.cfg.d_vocab)
        with memoised(sp.device.type == "meta"):  # the setup's forwards, answered by the simulations' memo
            repl = make_replacement(st.ablation, sp, data, data)
            cands = candidates(sp.latents(data.clean), repl)
        cache[key] = MethodContext(sp, data, repl, cands, seed=0)
    return cache[key]


def fresh_state(sp) -> None:
    """Every simulation of a method starts here, whichever process runs it and whatever ran before:
    torch's RNG at seed 0 and no train prefix cached in a stand-in context by an earlier simulation
    (each method pays for its own prefix, as the harness clears it before every method)."""
    import torch

    torch.manual_seed(0)
    for c in sp.__dict__.get("_plan_contexts", {}).values():
        c.clear_cache()
