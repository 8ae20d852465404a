"""The answer controls (bench.run.controls), the world variants (bench.model.world.variants) and the control
command: each checked against an independent recomputation or a hand-checkable property."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bench.data import logit_diff, tokenize_records
from bench.run.controls import apply_answers, orient_answers, shuffle_answers
from tasks import SubjectVerbAgreement


def _sva(world, n=24):
    return tokenize_records(SubjectVerbAgreement().records(n, 0), world.tokenizer, "sva", "1", "sva")


@pytest.mark.parametrize("task_name", ["ioi", "dict_keyerror", "sva"])
def test_shuffled_answers_carry_no_mechanism_of_the_prompt(tiny_world, task_name):
    from bench.run.setup import load_task

    data = tokenize_records(load_task(task_name).records(60, 0), tiny_world.tokenizer, task_name, "1", task_name)
    out = shuffle_answers(data, seed=3)
    own_clean = {int(a): [] for a in data.clean_answer}
    for j, (a, c) in enumerate(zip(data.clean_answer.tolist(), data.cases)):
        own_clean[a].append((j, c))
    for i in range(len(data)):
        a, b = int(out.clean_answer[i]), int(out.patch_answer[i])
        prompt = set(data.clean[i].tolist()) | set(data.patch[i].tolist())
        assert a != b and a not in prompt and b not in prompt
        assert {a, b}.isdisjoint({int(data.clean_answer[i]), int(data.patch_answer[i])})
        # both are clean answers of other prompts
        assert any(j != i for j, _ in own_clean.get(a, [])) and any(j != i for j, _ in own_clean.get(b, []))
    assert torch.equal(out.clean, data.clean) and torch.equal(out.patch, data.patch)
    if task_name == "dict_keyerror":  # Traceback is one of every code prompt's own answers: never borrowed
        tb = tiny_world.tokenizer.convert_tokens_to_ids("Traceback")
        assert not (out.clean_answer == tb).any() and not (out.patch_answer == tb).any()
    if task_name == "sva":  # two verbs of the same number: both singular or both plural
        plural = {int(v) for v, c in zip(data.clean_answer, data.cases) if c == "plural"}
        assert all((int(x) in plural) == (int(y) in plural) for x, y in zip(out.clean_answer, out.patch_answer))


def test_train_and_test_are_shuffled_differently(tiny_world):
    data = _sva(tiny_world, 40)
    tr, te = data.subset(list(range(40)), "train"), data.subset(list(range(40)), "test")
    from bench.model.ablation import make_replacement

    repl = make_replacement("mean", tiny_world.spliced, tr, tr)
    a = apply_answers("shuffled", tr, tiny_world.spliced, 0, repl)
    b = apply_answers("shuffled", te, tiny_world.spliced, 0, repl)
    assert not torch.equal(torch.stack([a.clean_answer, a.patch_answer]).sort(0).values,
                           torch.stack([b.clean_answer, b.patch_answer]).sort(0).values)


def test_orientation_makes_every_prompts_latent_carried_preference_positive(tiny_world):
    from bench.model.ablation import make_replacement

    spliced = tiny_world.spliced
    data = shuffle_answers(_sva(tiny_world, 40), seed=1)  # borrowed answers: both signs occur
    repl = make_replacement("mean", spliced, data, data)
    # the reference, by hand with TransformerLens hooks: every SAE spliced (error dropped, BOS passed
    # through); "empty": every site's output is the decoded per-position mean latents
    with torch.no_grad():
        full = spliced.model.run_with_hooks(data.clean, fwd_hooks=[(s, _splice(spliced.saes[s])) for s in spliced.sites])
        empty = spliced.model.run_with_hooks(
            data.clean, fwd_hooks=[(s, _constant(spliced.saes[s], repl.values[s])) for s in spliced.sites])
    d = logit_diff(full, data.clean_answer, data.patch_answer) - logit_diff(empty, data.clean_answer, data.patch_answer)
    assert (d < 0).any() and (d > 0).any()
    out = orient_answers(data, spliced, repl, max_rows=7)  # batches of 7: the batching must not matter
    after = logit_diff(full, out.clean_answer, out.patch_answer) - logit_diff(empty, out.clean_answer, out.patch_answer)
    torch.testing.assert_close(after, d.abs(), rtol=0, atol=1e-4)  # float32 logits of this size
    assert torch.equal(out.clean_answer != data.clean_answer, d < 0)


def _splice(sae):
    def hook(x, hook):
        out = sae.decode(sae.encode(x))
        out[:, 0] = x[:, 0]  # BOS passes through unchanged, as in the spliced model
        return out
    return hook


def _constant(sae, latents):
    def hook(x, hook):
        out = sae.decode(latents[: x.shape[1]]).expand_as(x).clone()
        out[:, 0] = x[:, 0]
        return out
    return hook


def test_task_answers_are_untouched(tiny_world):
    data = _sva(tiny_world)
    assert apply_answers("task", data, tiny_world.spliced, 0, None) is data


@pytest.fixture(scope="module")
def variant_world(tiny_world_dir, tmp_path_factory):
    from bench.model.world.variants import VariantConfig, build_variant

    root = tmp_path_factory.mktemp("variants") / "w"
    shutil.copytree(tiny_world_dir, root)
    cfg = VariantConfig(lossy_d_sae=16, lossy_k=1, n_eval=16)  # the tiny world's own SAE training at d_sae 16
    for name in ("basis", "lossy", "random"):
        build_variant(name, root, cfg)
    return root


def test_basis_dictionary_reconstructs_exactly(variant_world):
    from bench.model.loading import load_world

    basis = load_world("embedded-basis", world_dir=variant_world)
    spliced = basis.spliced
    x = torch.randn(3, 5, spliced.model.cfg.d_model)
    for s in spliced.sites:
        sae = spliced.saes[s]
        f = sae.encode(x)
        assert f.shape[-1] == 2 * x.shape[-1] and (f >= 0).all()
        torch.testing.assert_close(sae.decode(f), x, rtol=0, atol=0)  # x·I and ±1 sums are exact in float32
    stats = json.loads((variant_world / "variants.json").read_text())["basis"]
    for q in stats["quality_held_out"].values():
        assert q["logit_diff_kept_fraction"] == pytest.approx(1.0, abs=1e-5)


def test_variants_load_with_their_own_files_and_fingerprints(variant_world):
    from bench.model.loading import load_world

    real = load_world("embedded", world_dir=variant_world)
    lossy = load_world("embedded-lossy", world_dir=variant_world)
    rnd = load_world("embedded-random", world_dir=variant_world)
    assert all(lossy.spliced.saes[s].cfg.d_sae == 16 for s in lossy.spliced.sites)
    assert set(lossy.spliced.sites) == set(real.spliced.sites) == set(rnd.spliced.sites)
    w_real = real.spliced.model.W_E
    torch.testing.assert_close(lossy.spliced.model.W_E, w_real)  # lossy: the same model
    assert not torch.allclose(rnd.spliced.model.W_E, w_real)  # random: re-initialised
    assert len({real.fingerprint, lossy.fingerprint, rnd.fingerprint}) == 3
    assert not any(k.startswith(("saes-", "model-")) for k in real.meta["file_hashes"])


def test_a_missing_variant_is_one_clear_line(tiny_world_dir, capsys):
    from bench.cli.main import main

    code = main(["run", "--methods", "random", "--tasks", "sva", "--preset", "embedded-lossy", "--world",
                 str(tiny_world_dir), "--out", str(tiny_world_dir.parent / "x"), "--quick", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "bench train --variant lossy" in err and "Traceback" not in err


def test_control_command_writes_the_controls_table(variant_world, tmp_path):
    import pandas as pd

    from bench.cli.main import main

    out = tmp_path / "r"
    common = ["--world", str(variant_world), "--quick", "--no-progress", "--n-train", "12", "--n-test", "12",
              "--tasks", "sva", "--methods", "binary_mask,attribution_patching,random", "--option", "binary_mask.steps=5"]
    assert main(["control", "shuffled", "--out", str(out), "--no-progress"]) == 2  # no real run yet: one line
    assert main(["run", "--out", str(out), *common]) == 0
    for name in ("shuffled", "random", "basis"):
        assert main(["control", name, "--out", str(out), "--no-progress", "--no-figures"]) == 0
    real = json.loads((out / "run.json").read_text())["config"]
    for name, preset, answers in (("shuffled", real["preset"], "shuffled"), ("random", "embedded-random", "oriented"),
                                  ("basis", "embedded-basis", "task")):
        run = json.loads((out / "controls" / name / "run.json").read_text())["config"]
        assert (run["preset"], run["answers"]) == (preset, answers)
        assert {k: v for k, v in run.items() if k not in ("preset", "answers")} == \
            {k: v for k, v in real.items() if k not in ("preset", "answers")}  # the real run's settings
    report = (out / "report.md").read_text()
    assert "## Controls" in report and "controls as good" in report
    sig = pd.read_csv(out / "summary_control_signal.csv")
    assert (sig[sig.run.isin(["shuffled", "random"])].signal > 0).all()  # oriented: mean |d_i| > 0
    cmp = pd.read_csv(out / "summary_controls.csv")
    assert set(cmp.control) == {"shuffled", "random", "basis"} and set(cmp.method) >= {"attribution_patching"}
    # the control column is the control run's own F, not the real run's again
    from bench.eval import verdict
    from bench.run.results import load_results

    for name in ("shuffled", "random"):
        own = verdict.build(load_results(out / "controls" / name))["matched"]
        got = cmp[cmp.control == name].merge(own, on=["task", "target", "method"])
        assert len(got) and (got.F_control - got.F).abs().max() < 1e-9
        assert (got.F_control - got.F_real).abs().max() > 1e-6


def _matched(F, lo, hi, k, method="m", target=30):
    import pandas as pd

    return pd.DataFrame([{"task": "t", "target": target, "method": method, "k": k, "F": F, "lo": lo, "hi": hi,
                          "F_train": F}])


@pytest.mark.parametrize("real,ctl,flag", [
    ((0.9, 0.8, 1.0, 30), (0.85, 0.7, 1.0, 30), True),    # inside the real interval, same size
    ((0.9, 0.8, 1.0, 30), (0.95, 0.9, 1.0, 20), True),    # above it, smaller
    ((0.9, 0.8, 1.0, 30), (0.5, 0.4, 0.6, 30), False),    # below it
    ((0.9, 0.8, 1.0, 30), (0.9, 0.8, 1.0, 60), False),    # as good, but with twice the nodes
    ((0.9, 0.8, 1.0, 30), (float("nan"), float("nan"), float("nan"), 30), False),
    ((0.0, -0.01, 0.01, 30), (0.0, -0.01, 0.01, 30), False),  # nothing real to match
])
def test_control_flag_rule(real, ctl, flag):
    import pandas as pd

    from bench.report.controls import compare, flags_for_pairwise

    empty_ref = pd.DataFrame()
    cmp, _ = compare({"matched": _matched(*real), "references": empty_ref},
                     {"c": {"matched": _matched(*ctl), "references": empty_ref}})
    assert bool(cmp.control_as_good.iloc[0]) is flag
    assert (("t", 30, "m") in flags_for_pairwise(cmp)) is flag


def test_mean_policy_setups_keep_their_own_error_means(tiny_world):
    from bench.run.config import RunConfig
    from bench.run.setup import load_task, setup_task

    cfg = RunConfig(error_policy="mean", n_train=8, n_test=8)
    a = setup_task(load_task("sva"), tiny_world, cfg, 0)
    b = setup_task(load_task("dict_keyerror"), tiny_world, cfg, 0)  # longer prompts, fitted after a
    ref = tiny_world.spliced.with_policy("mean")
    ref.fit_error_means(a.train.patch)
    for site in ref.sites:
        torch.testing.assert_close(a.ctx.spliced.error_means[site], ref.error_means[site], rtol=0, atol=0)
        assert a.evaluator.spliced.error_means[site].shape[0] == a.train.n_pos != b.train.n_pos


def test_a_run_recorded_before_a_setting_existed_reads_it_at_its_default(tmp_path):
    """The committed run's run.json predates the edge settings; a control made later records them at
    their defaults. Both must read the same, or the report leaves a valid control out."""
    from bench.report.controls import _config
    from bench.run.config import RunConfig

    old, new = tmp_path / "old", tmp_path / "new"
    for d, extra in ((old, {}), (new, {"edge_node_method": RunConfig().edge_node_method, "edge_max_nodes": 48})):
        d.mkdir()
        (d / "run.json").write_text(json.dumps({"config": {"preset": "embedded", "seeds": [0], **extra}}))
    a, b = _config(old), _config(new)
    assert a == b and a["edge_max_nodes"] == 48
    (new / "run.json").write_text(json.dumps({"config": {"preset": "embedded", "seeds": [0], "edge_max_nodes": 12}}))
    assert _config(new)["edge_max_nodes"] != a["edge_max_nodes"]  # a real difference still shows
