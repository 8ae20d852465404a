"""The public method contract: checks every method must pass, and a pytest helper.

In a plugin's own repository::

    from bench.testing import parametrize_with_checks
    from my_pkg.my_method import MyMethod

    @parametrize_with_checks([MyMethod()])
    def test_contract(method, check):
        check(method)

Each check builds a hand-made toy (``bench.toys``) with known answers, so it needs no download and
runs in seconds on a CPU. Expected failures must carry a reason::

    @parametrize_with_checks([MyMethod()], expected_failures={"check_planted_latent": "ranks by magnitude of activation only"})

``python -m bench check NAME`` runs the same checks from the command line.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable

import torch

from bench.api import CircuitSet, Method, Scores
from bench.run.cell import validate_output

BUDGET_SECONDS = 60.0


class ContractError(AssertionError):
    """A method broke the contract; the message says which check and why."""


def _fresh(method: Method) -> Method:
    return type(method)(copy.deepcopy(method.config))


def _state_hash(spliced) -> str:
    h = hashlib.sha256()
    for module in [spliced.model, *spliced.saes.values()]:
        for k, v in sorted(module.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _ctx(toy_name: str = "planted", seed: int = 0):
    from bench.toys import context_for, linear_toy, multisite_toy, planted_toy

    toy = {"planted": planted_toy, "linear": linear_toy, "multisite": multisite_toy}[toy_name](seed)
    return toy, context_for(toy)


def check_config_round_trip(method: Method) -> None:
    cfg = method.config
    d = cfg.to_dict()
    text = json.dumps(d, sort_keys=True)
    back = type(cfg).from_dict(json.loads(text))
    if back != cfg:
        raise ContractError(f"config does not round-trip through JSON: {cfg} -> {back}")
    if not method.name or not method.version:
        raise ContractError("method must set class attributes `name` and `version`")
    if method.kind not in ("scores", "circuits"):
        raise ContractError(f"kind must be 'scores' or 'circuits', got {method.kind!r}")


def check_output_well_formed(method: Method) -> None:
    _, ctx = _ctx("multisite")
    out = _fresh(method).discover(ctx)
    try:
        validate_output(out, ctx, method.name)
    except Exception as exc:  # noqa: BLE001
        raise ContractError(f"malformed output: {exc}") from None
    if method.kind == "scores" and not isinstance(out, Scores):
        raise ContractError(f"kind is 'scores' but discover() returned {type(out).__name__}")
    if method.kind == "circuits" and not isinstance(out, CircuitSet):
        raise ContractError(f"kind is 'circuits' but discover() returned {type(out).__name__}")


def check_model_unchanged(method: Method) -> None:
    toy, ctx = _ctx()
    before = _state_hash(toy.spliced)
    _fresh(method).discover(ctx)
    if _state_hash(toy.spliced) != before:
        raise ContractError("the method changed model or SAE weights")
    if toy.spliced.hook_count():
        raise ContractError(f"{toy.spliced.hook_count()} hook(s) left on the model after the run")
    for p in toy.spliced.model.parameters():
        if p.requires_grad:
            raise ContractError("the method left model parameters with requires_grad=True")


def check_model_unchanged_after_exception(method: Method) -> None:
    """A failure injected inside the model's forward (the SAE substitution at the last site, half-way
    through the method's passes) must surface as an exception and leave no hook and no changed
    weight. Every path into the spliced model (full runs, runs from a site, captures) goes through
    ``SplicedModel.substitute``; a first, clean run counts the passes so the failure lands mid-run."""
    from bench.model.spliced import SplicedModel

    toy, ctx = _ctx("multisite")
    before = _state_hash(toy.spliced)
    real = SplicedModel.substitute
    target = toy.spliced.sites[-1]
    calls = {"n": 0, "at": 0, "raised": False}

    def counting(self, site, x, *args, **kwargs):
        if site == target:
            calls["n"] += 1
            if calls["n"] == calls["at"]:
                calls["raised"] = True
                raise RuntimeError("injected failure")
        return real(self, site, x, *args, **kwargs)

    _, ctx2 = _ctx("multisite")  # built before counting: its own setup runs the model too
    SplicedModel.substitute = counting
    surfaced = False
    try:
        _fresh(method).discover(ctx2)  # counting run
        total, calls["n"], calls["at"] = calls["n"], 0, max(1, (calls["n"] + 1) // 2)
        if total == 0:
            return  # never runs the model (e.g. a random ranking): no forward to fail in, nothing to leak
        try:
            _fresh(method).discover(ctx)
        except RuntimeError as exc:
            if "injected failure" not in str(exc):
                raise
            surfaced = True
    finally:
        SplicedModel.substitute = real
    if not calls["raised"]:
        raise ContractError(f"the failure was never injected: pass {calls['at']} of {total} at the last site never came")
    if not surfaced:
        raise ContractError("an exception raised inside the model's forward was swallowed by the method")
    if toy.spliced.hook_count():
        raise ContractError(f"{toy.spliced.hook_count()} hook(s) left after a run that raised")
    if _state_hash(toy.spliced) != before:
        raise ContractError("weights changed after a run that raised")


def _as_tensors(out) -> list[torch.Tensor]:
    if isinstance(out, Scores):
        return [out.values[k] for k in sorted(out.values)]
    return [c.masks[k] for c in out.circuits for k in sorted(c.masks)]


def check_deterministic(method: Method) -> None:
    _, ctx_a = _ctx("multisite")
    _, ctx_b = _ctx("multisite")
    a, b = _as_tensors(_fresh(method).discover(ctx_a)), _as_tensors(_fresh(method).discover(ctx_b))
    if len(a) != len(b) or not all(torch.equal(x, y) for x, y in zip(a, b)):
        raise ContractError("two runs with the same seed gave different results")


def check_planted_latent(method: Method) -> None:
    from bench.toys import PLANTED

    toy, ctx = _ctx()
    out = _fresh(method).discover(ctx)
    last = ctx.train.n_pos - 1
    if isinstance(out, Scores):
        s = out.values[toy.site]
        top = divmod(int(s.abs().flatten().argmax()), s.shape[1])
        if top != (last, PLANTED):
            raise ContractError(f"planted latent (pos {last}, latent {PLANTED}) not ranked first; top was {top}")
    else:
        nonempty = [c for c in out.circuits if c.n_nodes(ctx.candidates) > 0]
        if not nonempty:
            raise ContractError("every circuit is empty on the planted toy")
        smallest = min(nonempty, key=lambda c: c.n_nodes(ctx.candidates))
        if not bool(smallest.masks[toy.site][last, PLANTED]):
            raise ContractError("the smallest non-empty circuit misses the planted latent")


def check_exact_on_linear_toy(method: Method) -> None:
    from bench import registry

    ActivationPatching = registry.load("method", "activation_patching")  # noqa: N806 - the exact reference

    if not getattr(method, "gradient_based", False):
        return  # only gradient methods promise exactness on an affine metric
    toy, ctx = _ctx("linear")
    out = _fresh(method).discover(ctx)
    exact = ActivationPatching(max_prompts=len(ctx.train)).discover(ctx).values[toy.site]
    cand = ctx.candidates[toy.site]
    err = (out.values[toy.site][cand] - exact[cand]).abs().max().item()
    if err > 1e-5:
        raise ContractError(f"gradient method differs from exact patching on the linear toy by {err:.2e} (> 1e-5)")


def check_within_budget(method: Method) -> None:
    _, ctx = _ctx()
    t0 = time.perf_counter()
    _fresh(method).discover(ctx)
    took = time.perf_counter() - t0
    if took > BUDGET_SECONDS:
        raise ContractError(f"took {took:.1f}s on the toy, budget {BUDGET_SECONDS:.0f}s")


CHECKS: dict[str, Callable[[Method], None]] = {
    f.__name__: f for f in (
        check_config_round_trip, check_output_well_formed, check_model_unchanged, check_model_unchanged_after_exception,
        check_deterministic, check_planted_latent, check_exact_on_linear_toy, check_within_budget,
    )
}


def run_checks(method: Method, expected_failures: dict[str, str] | None = None) -> list[tuple[str, str, str]]:
    """Run every check; return ``(check, status, reason)`` with status pass / FAIL / xfail / XPASS."""
    expected_failures = {**method.contract_expected_failures, **(expected_failures or {})}
    results = []
    for name, check in CHECKS.items():
        try:
            check(method)
            status, reason = ("XPASS", "expected to fail but passed") if name in expected_failures else ("pass", "")
        except Exception as exc:  # noqa: BLE001
            reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ContractError) else str(exc)
            status = "xfail" if name in expected_failures else "FAIL"
            if status == "xfail":
                reason = f"{expected_failures[name]} (failed as expected: {reason})"
        results.append((name, status, reason))
    return results


def parametrize_with_checks(methods: list[Method], expected_failures: dict[str, str] | None = None):
    """A ``pytest.mark.parametrize`` over (method, check) for a plugin's own test suite."""
    import pytest

    expected_failures = expected_failures or {}
    for name, reason in [*expected_failures.items(), *(kv for m in methods for kv in m.contract_expected_failures.items())]:
        if name not in CHECKS:
            raise ValueError(f"expected_failures names unknown check {name!r}")
        if not reason:
            raise ValueError(f"expected failure {name!r} must carry a reason")
    params = []
    for m in methods:
        for name, check in CHECKS.items():
            xf = {**m.contract_expected_failures, **expected_failures}
            marks = [pytest.mark.xfail(reason=xf[name], strict=True)] if name in xf else []
            params.append(pytest.param(m, check, id=f"{m.name}-{name}", marks=marks))
    return pytest.mark.parametrize("method,check", params)
