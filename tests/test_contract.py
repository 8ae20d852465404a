"""Every built-in method passes the public contract (the same one plugins run)."""

from __future__ import annotations

import pytest

from bench.api import Method, MethodConfig, Scores
from bench.testing import CHECKS, ContractError, parametrize_with_checks, run_checks
from methods.activation_patching import ActivationPatching
from methods.attribution_patching import AttributionPatching
from methods.binary_mask import BinaryMask
from methods.integrated_gradients import IntegratedGradients

BUILTINS = [BinaryMask(steps=30, n_lambdas=3, lambda_min=0.01, lambda_max=0.3), AttributionPatching(),
            IntegratedGradients(), IntegratedGradients(path="joint"), ActivationPatching()]


@parametrize_with_checks(BUILTINS)
def test_builtin_methods_pass_the_contract(method, check):
    check(method)


class _LeaksHooks(Method):
    """A deliberately broken method: ranks by activation and leaves a hook behind."""

    name = "leaky"
    version = "0"

    def discover(self, ctx):
        ctx.spliced.model.hook_dict[ctx.sites[0]].add_hook(lambda x, hook: x)
        lat = ctx.spliced.latents(ctx.train.clean)
        return Scores({s: v.mean(0) for s, v in lat.items()})


def test_contract_catches_a_broken_method():
    results = {name: status for name, status, _ in run_checks(_LeaksHooks())}
    assert results["check_model_unchanged"] == "FAIL"
    assert results["check_config_round_trip"] == "pass"


def test_expected_failures_need_a_reason_and_a_known_check():
    with pytest.raises(ValueError, match="reason"):
        parametrize_with_checks([AttributionPatching()], expected_failures={"check_planted_latent": ""})
    with pytest.raises(ValueError, match="unknown check"):
        parametrize_with_checks([AttributionPatching()], expected_failures={"check_nothing": "x"})


def test_checks_raise_contract_errors_with_reasons():
    class Nan(Method):
        name = "nan"
        version = "0"

        def discover(self, ctx):
            import torch

            return Scores({s: torch.full((ctx.train.n_pos, ctx.spliced.d_sae(s)), float("nan")) for s in ctx.sites})

    with pytest.raises(ContractError, match="NaN"):
        CHECKS["check_output_well_formed"](Nan())


def test_config_round_trip_rejects_unknown_options():
    with pytest.raises(ValueError, match="unknown option"):
        BinaryMask.Config.from_dict({"steps": 3, "nope": 1})
    assert isinstance(BinaryMask.Config(), MethodConfig)


class _SwallowsErrors(Method):
    """A deliberately broken method: runs the model but hides any exception from it."""

    name = "swallows"
    version = "0"

    def discover(self, ctx):
        import torch

        try:
            ctx.spliced.run(ctx.train.clean)
        except RuntimeError:
            pass
        return Scores({s: torch.ones(ctx.train.n_pos, ctx.spliced.d_sae(s)) for s in ctx.sites})


class _NeverRunsModel(Method):
    name = "no_model"
    version = "0"

    def discover(self, ctx):
        import torch

        return Scores({s: torch.ones(ctx.train.n_pos, ctx.spliced.d_sae(s)) for s in ctx.sites})


def test_exception_check_asserts_the_failure_was_injected_and_surfaced():
    check = CHECKS["check_model_unchanged_after_exception"]
    with pytest.raises(ContractError, match="swallowed"):
        check(_SwallowsErrors())
    check(_NeverRunsModel())  # nothing to inject into: passes (a random ranking never runs the model)
    check(ActivationPatching())  # exact patching runs from a site (run_from): the injection reaches it too
