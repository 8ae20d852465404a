"""The answer controls (bench.controls), the world variants (bench.world.variants) and the control
command: each checked against an independent recomputation or a hand-checkable property."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bench.controls import apply_answers, derangement, orient_answers, shuffle_answers
from bench.data import logit_diff, tokenize_records
from bench.world.train_saes import SAETrainConfig
from tasks import SubjectVerbAgreement


def _sva(world, n=24):
    return tokenize_records(SubjectVerbAgreement().records(n, 0), world.tokenizer, "sva", "1", "sva")


def test_derangement_is_a_seeded_permutation_without_fixed_points():
    for n in (2, 3, 17, 200):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n))
        assert not (p == torch.arange(n)).any()
        assert torch.equal(p, derangement(n, seed=n))


def test_shuffled_answers_are_another_prompts_pair(tiny_world):
    data = _sva(tiny_world)
    out = shuffle_answers(data, seed=3)
    pairs = list(zip(data.clean_answer.tolist(), data.patch_answer.tolist()))
    got = list(zip(out.clean_answer.tolist(), out.patch_answer.tolist()))
    assert sorted(got) == sorted(pairs)  # the same pairs, kept as pairs
    perm = derangement(len(data), 3)
    assert got == [pairs[j] for j in perm.tolist()]
    assert torch.equal(out.clean, data.clean) and torch.equal(out.patch, data.patch)


def test_orientation_swaps_exactly_the_prompts_the_model_gets_wrong(tiny_world):
    spliced = tiny_world.spliced
    data = shuffle_answers(_sva(tiny_world, 40), seed=1)  # a shuffle: some prompts now prefer the patch answer
    # the reference: the TransformerLens model with every SAE spliced (error dropped), run here by hand
    with torch.no_grad():
        logits = spliced.model.run_with_hooks(data.clean, fwd_hooks=[(s, _splice(spliced.saes[s])) for s in spliced.sites])
    before = logit_diff(logits, data.clean_answer, data.patch_answer)
    assert (before < 0).any() and (before > 0).any()
    out = orient_answers(data, spliced, max_rows=7)  # batches of 7: the batching must not matter
    after = logit_diff(logits, out.clean_answer, out.patch_answer)
    torch.testing.assert_close(after, before.abs(), rtol=0, atol=1e-4)  # float32 logits of this size
    swapped = out.clean_answer != data.clean_answer
    assert torch.equal(swapped, before < 0)


def _splice(sae):
    def hook(x, hook):
        out = sae.decode(sae.encode(x))
        out[:, 0] = x[:, 0]  # BOS passes through unchanged, as in the spliced model
        return out
    return hook


def test_task_answers_are_untouched(tiny_world):
    data = _sva(tiny_world)
    assert apply_answers("task", data, tiny_world.spliced, 0) is data


@pytest.fixture(scope="module")
def variant_world(tiny_world_dir, tmp_path_factory):
    from bench.world.variants import VariantConfig, build_variant

    root = tmp_path_factory.mktemp("variants") / "w"
    shutil.copytree(tiny_world_dir, root)
    cfg = VariantConfig(lossy_saes=SAETrainConfig(d_sae=16, k=1, steps=30, batch_size=256, n_prompts=200), n_eval=16)
    for name in ("basis", "lossy", "random"):
        build_variant(name, root, cfg)
    return root


def test_basis_dictionary_reconstructs_exactly(variant_world):
    from bench.loading import load_world

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
    from bench.loading import load_world

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
    from bench.cli import main

    code = main(["run", "--methods", "random", "--tasks", "sva", "--preset", "embedded-lossy", "--world",
                 str(tiny_world_dir), "--out", str(tiny_world_dir.parent / "x"), "--quick", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "bench train --variant lossy" in err and "Traceback" not in err


def test_control_command_writes_the_controls_table(variant_world, tmp_path):
    from bench.cli import main

    out = tmp_path / "r"
    common = ["--world", str(variant_world), "--quick", "--no-progress", "--n-train", "12", "--n-test", "12",
              "--tasks", "sva", "--methods", "binary_mask,attribution_patching,random", "--option", "binary_mask.steps=5"]
    assert main(["run", "--out", str(out), *common]) == 0
    assert main(["control", "shuffled", "--out", str(out), *common]) == 0
    assert main(["control", "random", "--out", str(out), *common]) == 0
    run = json.loads((out / "controls" / "random" / "run.json").read_text())
    assert run["config"]["preset"] == "embedded-random" and run["config"]["answers"] == "oriented"
    report = (out / "report.md").read_text()
    assert "## Controls" in report and "controls as good" in report
    import pandas as pd

    cmp = pd.read_csv(out / "summary_controls.csv")
    assert set(cmp.control) == {"shuffled", "random"} and set(cmp.method) >= {"attribution_patching"}
    sig = pd.read_csv(out / "summary_control_signal.csv")
    assert (sig[sig.run != "real"].m_sae > 0).all()  # oriented answers: the model prefers the first one
