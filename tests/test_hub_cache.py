"""The hub presets' loading path, offline: a hand-made Hugging Face cache with tiny random weights.

The cache holds the *real* repositories in huggingface_hub's layout
(``models--{org}--{name}/refs/main`` -> ``snapshots/<commit>/...``):

* ``gpt2`` (what TransformerLens maps ``gpt2-small`` to): ``config.json`` (GPT2LMHeadModel with
  tiny dims: 12 layers of width 16, 257 tokens), ``model.safetensors`` with the real checkpoint's key
  names (``h.{i}.attn.c_attn.weight``, ... no ``transformer.`` prefix, ``attn.bias`` buffers, tied
  head), ``generation_config.json``, and a byte-level BPE tokenizer (``vocab.json``, ``merges.txt``,
  ``tokenizer.json``, ``tokenizer_config.json``). TransformerLens reads the HF config through
  ``AutoConfig`` (dims come from ``config.json``), the weights through ``AutoModelForCausalLM`` and the
  tokenizer through ``AutoTokenizer``.
* ``jbloom/GPT2-Small-SAEs-Reformatted`` (release ``gpt2-small-res-jb``):
  ``blocks.{L}.hook_resid_pre/{cfg.json, sae_weights.safetensors, sparsity.safetensors}`` with the
  original (pre-SAELens-6) ``cfg.json`` keys.
* ``google/gemma-scope-2b-pt-res`` (release ``gemma-scope-2b-pt-res-canonical``):
  ``layer_6/width_16k/average_l0_70/params.npz`` (``W_enc, W_dec, b_enc, b_dec, threshold``), read by
  SAELens's ``gemma_2`` loader. That loader takes ``d_in`` from the repo id and ``d_sae`` from
  ``width_16k``, so this one SAE has its real size (2304 x 16384, 300 MB on disk).

A child process (the cache location and ``HF_HUB_OFFLINE=1`` are read when huggingface_hub is
imported) then runs the real code: ``bench.model.loading.load_world("gpt2-small")`` (the built-in preset,
unchanged) -> ``setup_task`` -> ``run_cell(attribution_patching)`` with the evaluator; and for Gemma
Scope ``bench.model.loading.load_hub_saes`` on a preset TOML naming the real release and id, spliced into
a Gemma-2 model built from TransformerLens's own ``gemma-2-2b`` config with every dim except
``d_model`` shrunk (TransformerLens hard-codes Gemma-2 configs, so ``from_pretrained`` of a tiny
Gemma-2 is impossible; the model half of the Gemma path is therefore not covered here).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JB_REPO = "jbloom/GPT2-Small-SAEs-Reformatted"
GS_REPO = "google/gemma-scope-2b-pt-res"
GS_ID, GS_FOLDER = "layer_6/width_16k/canonical", "layer_6/width_16k/average_l0_70"
GPT2_LAYERS = (3, 6, 9, 11)  # the gpt2-small preset's SAEs
D_MODEL, D_SAE = 16, 64


# ----- the cache ----------------------------------------------------------------------------------

def snapshot_dir(cache: Path, repo_id: str) -> Path:
    """``models--org--name/snapshots/<commit>`` with ``refs/main`` pointing at it (huggingface_hub's layout)."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    root = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-character table (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_gpt2_repo(cache: Path, d_model: int = D_MODEL, n_layer: int = 12, n_head: int = 2, n_pos: int = 64) -> Path:
    import torch
    from safetensors.torch import save_file
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    snap = snapshot_dir(cache, "gpt2")
    b2u = _bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)} | {"<|endoftext|>": 256}
    n_vocab = len(vocab)
    config = {
        "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1, "bos_token_id": 256,
        "embd_pdrop": 0.1, "eos_token_id": 256, "initializer_range": 0.02, "layer_norm_epsilon": 1e-05, "model_type": "gpt2",
        "n_ctx": n_pos, "n_embd": d_model, "n_head": n_head, "n_layer": n_layer, "n_positions": n_pos, "resid_pdrop": 0.1,
        "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
        "summary_type": "cls_index", "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}}, "vocab_size": n_vocab,
    }
    (snap / "config.json").write_text(json.dumps(config, indent=2))
    (snap / "generation_config.json").write_text(json.dumps({"_from_model_config": True, "bos_token_id": 256, "eos_token_id": 256}))
    (snap / "tokenizer_config.json").write_text(json.dumps({"model_max_length": n_pos}))
    (snap / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (snap / "merges.txt").write_text("#version: 0.2\n")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    tok.save(str(snap / "tokenizer.json"))

    g = torch.Generator().manual_seed(0)

    def r(*shape, std=0.2):
        return (torch.randn(*shape, generator=g) * std).contiguous()

    d, m = d_model, 4 * d_model
    sd = {"wte.weight": r(n_vocab, d, std=0.5), "wpe.weight": r(n_pos, d, std=0.1),
          "ln_f.weight": 1 + r(d, std=0.05), "ln_f.bias": r(d, std=0.05)}
    for i in range(n_layer):
        p = f"h.{i}."
        sd |= {
            p + "ln_1.weight": 1 + r(d, std=0.05), p + "ln_1.bias": r(d, std=0.05),
            p + "attn.c_attn.weight": r(d, 3 * d), p + "attn.c_attn.bias": r(3 * d, std=0.05),
            p + "attn.c_proj.weight": r(d, d), p + "attn.c_proj.bias": r(d, std=0.05),
            p + "ln_2.weight": 1 + r(d, std=0.05), p + "ln_2.bias": r(d, std=0.05),
            p + "mlp.c_fc.weight": r(d, m), p + "mlp.c_fc.bias": r(m, std=0.05),
            p + "mlp.c_proj.weight": r(m, d), p + "mlp.c_proj.bias": r(d, std=0.05),
            p + "attn.bias": torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos),
        }
    save_file(sd, str(snap / "model.safetensors"), metadata={"format": "pt"})
    return snap


def write_jb_sae_repo(cache: Path, layers=GPT2_LAYERS, d_in: int = D_MODEL, d_sae: int = D_SAE) -> Path:
    """Joseph Bloom's GPT-2 small residual SAEs: one folder per hook, pre-SAELens-6 cfg.json."""
    import torch
    from safetensors.torch import save_file

    snap = snapshot_dir(cache, JB_REPO)
    g = torch.Generator().manual_seed(1)
    for layer in layers:
        hook = f"blocks.{layer}.hook_resid_pre"
        folder = snap / hook
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {
            "model_name": "gpt2-small", "hook_point": hook, "hook_point_layer": layer, "hook_point_head_index": None,
            "dataset_path": "Skylion007/openwebtext", "is_dataset_tokenized": False, "context_size": 128,
            "use_cached_activations": False,
            "cached_activations_path": f"activations/Skylion007_openwebtext/gpt2-small/{hook}", "d_in": d_in,
            "n_batches_in_buffer": 128, "total_training_tokens": 300000000, "store_batch_size": 32, "device": "mps",
            "seed": 42, "dtype": "torch.float32", "b_dec_init_method": "geometric_median",
            "expansion_factor": d_sae // d_in, "from_pretrained_path": None, "l1_coefficient": 8e-05, "lr": 0.0004,
            "lr_scheduler_name": None, "lr_warm_up_steps": 5000, "train_batch_size": 4096, "use_ghost_grads": False,
            "feature_sampling_window": 1000, "feature_sampling_method": None, "resample_batches": 1028,
            "feature_reinit_scale": 0.2, "dead_feature_window": 5000, "dead_feature_estimation_method": "no_fire",
            "dead_feature_threshold": 1e-08, "log_to_wandb": True,
            "wandb_project": "mats_sae_training_gpt2_small_resid_pre_5", "wandb_entity": None,
            "wandb_log_frequency": 100, "n_checkpoints": 10, "checkpoint_path": "checkpoints/y1t51byy",
            "d_sae": d_sae, "tokens_per_buffer": 67108864, "run_name": f"{d_sae}-L1-8e-05-LR-0.0004-Tokens-3.000e+08",
        }
        (folder / "cfg.json").write_text(json.dumps(cfg))
        w = torch.randn(d_sae, d_in, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        save_file({"W_enc": w.T.contiguous(), "b_enc": torch.full((d_sae,), -0.1), "W_dec": w.contiguous(),
                   "b_dec": torch.zeros(d_in)}, str(folder / "sae_weights.safetensors"))
        save_file({"sparsity": torch.full((d_sae,), -3.0)}, str(folder / "sparsity.safetensors"))
    return snap


def write_gemma_scope_repo(cache: Path, folder: str = GS_FOLDER, d_in: int = 2304, d_sae: int = 16384) -> Path:
    """One Gemma Scope residual SAE: ``<folder>/params.npz`` as Google published them (float32)."""
    import numpy as np

    snap = snapshot_dir(cache, GS_REPO)
    out = snap / folder
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    w = rng.standard_normal((d_sae, d_in), dtype=np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    np.savez(out / "params.npz", W_enc=np.ascontiguousarray(w.T), W_dec=w, b_enc=np.zeros(d_sae, np.float32),
             b_dec=np.zeros(d_in, np.float32), threshold=np.full(d_sae, 0.5, np.float32))
    return snap


def task_records(n: int = 48, seed: int = 0, length: int = 6) -> list[dict[str, str]]:
    """Byte-tokenized records: every prompt ``length + 3`` characters (+1 token of BOS), one-character answers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = "".join(rng.choice("abcdefgh") for _ in range(length))
        out.append({"clean_prefix": f"{body}=x?", "patch_prefix": f"{body}=y?", "clean_answer": "1",
                    "patch_answer": "2", "case": "x"})
    return out


# ----- the child: the real loading code against the cache -----------------------------------------

def _finite_rows(rows: list[dict], metric: str) -> list[float]:
    import math

    return [r["value"] for r in rows if r.get("metric") == metric and math.isfinite(r["value"])]


def _setup(world, task_file: Path, max_rows: int, n: int = 8):
    from bench.run.config import RunConfig
    from bench.run.setup import load_task, setup_task

    cfg = RunConfig(preset=world.preset.name, tasks=(str(task_file),), methods=("attribution_patching",), n_train=n,
                    n_test=n, grid_per_decade=3, n_knockout=2, seeds=(0,), quick=True, max_rows=max_rows)
    return cfg, setup_task(load_task(str(task_file)), world, cfg, seed=0)


def _run_cell(world, task_file: Path, max_rows: int) -> dict:
    """The harness's whole cell: discover, cut at the size grid, evaluate, knockouts, rows."""
    from bench.run.cell import run_cell
    from methods.attribution_patching import AttributionPatching

    cfg, setup = _setup(world, task_file, max_rows)
    rows = run_cell(setup, AttributionPatching(), cfg)
    return {
        "n_rows": len(rows),
        "n_pos": setup.train.n_pos,
        "n_universe": setup.n_universe,
        "forward_calls": _finite_rows(rows, "forward_calls"),
        "backward_calls": _finite_rows(rows, "backward_calls"),
        "faithfulness": _finite_rows(rows, "faithfulness_sae_norm"),
        "errors": [r for r in rows if r.get("status") == "error"],
    }


def _run_steps(world, task_file: Path, max_rows: int) -> dict:
    """The same steps at two sizes only (d_sae 16384 makes the whole grid slow on CPU)."""
    import math

    from bench.run.cell import circuits_at_sizes, discover, evaluate_circuits, validate_output
    from methods.attribution_patching import AttributionPatching

    _, setup = _setup(world, task_file, max_rows, n=4)
    setup.evaluator.check_defined("test")
    out, cost = discover(AttributionPatching(), setup.ctx)
    cost = cost.as_metrics() if hasattr(cost, "as_metrics") else cost
    validate_output(out, setup.ctx, "attribution_patching")
    evals = evaluate_circuits(setup.evaluator, circuits_at_sizes(out, setup.universe, [10, 100]))
    f = [e.forms[s]["faithfulness_sae_norm"] for e in evals for s in ("test", "train")]
    return {"n_pos": setup.train.n_pos, "n_universe": setup.n_universe, "sizes": [e.size_nodes for e in evals],
            "forward_calls": [cost["forward_calls"]], "backward_calls": [cost["backward_calls"]],
            "faithfulness": [v for v in f if math.isfinite(v)], "errors": []}


def _gpt2_part(cache: Path, tmp: Path) -> tuple[dict, object]:
    import torch
    from safetensors.torch import load_file

    from bench.model.loading import load_world

    world = load_world("gpt2-small")  # the built-in preset, unchanged
    model, spliced = world.spliced.model, world.spliced
    snap = snapshot_dir(cache, "gpt2")
    hf = load_file(str(snap / "model.safetensors"))
    jb = load_file(str(snapshot_dir(cache, JB_REPO) / "blocks.6.hook_resid_pre" / "sae_weights.safetensors"))
    cw = world.meta.get("model_from_pretrained_kwargs", {})
    tok = world.tokenizer
    task_file = tmp / "bytes_task.json"
    task_file.write_text(json.dumps(task_records()))
    return {
        "model_name": model.cfg.model_name,
        "architecture": model.cfg.original_architecture,
        "d_model": model.cfg.d_model, "n_layers": model.cfg.n_layers, "d_vocab": model.cfg.d_vocab,
        "sites": spliced.sites,
        "sae_classes": sorted({type(s).__name__ for s in spliced.saes.values()}),
        "d_sae": [spliced.d_sae(s) for s in spliced.sites],
        "model_kwargs": cw,
        # the weights are the cache's: b_in is untouched by centering, the SAE's W_enc is loaded as is
        "b_in_matches_file": bool(torch.allclose(model.blocks[0].mlp.b_in, hf["h.0.mlp.c_fc.bias"])),
        "sae_W_enc_matches_file": bool(torch.equal(spliced.saes["blocks.6.hook_resid_pre"].W_enc, jb["W_enc"])),
        # center_writing_weights (what these SAEs were trained under): writing weights have zero mean over d_model
        "W_E_row_mean_abs": float(model.W_E.mean(-1).abs().max()),
        "W_out_row_mean_abs": float(model.blocks[0].mlp.W_out.mean(-1).abs().max()),
        "file_W_E_row_mean_abs": float(hf["wte.weight"].mean(-1).abs().max()),
        "bos_first": tok("ab")["input_ids"][0] == 256,
        "cell": _run_cell(world, task_file, max_rows=256),
    }, tok


def _gemma_part(tmp: Path, tokenizer) -> dict:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    from bench.model.loading import World, load_hub_saes, model_kwargs_for
    from bench.model.presets import get_preset
    from bench.model.spliced import SplicedModel

    toml = tmp / "gemma-scope-one.toml"
    toml.write_text(f'[gemma-scope-one]\nmodel = "gemma-2-2b"\nsae_release = "gemma-scope-2b-pt-res-canonical"\n'
                    f'sae_ids = ["{GS_ID}"]\ndtype = "float32"\n')
    preset = get_preset(str(toml))
    saes = load_hub_saes(preset)
    real = get_pretrained_model_config("gemma-2-2b")  # offline: TransformerLens hard-codes Gemma-2 configs
    d = {k: v for k, v in real.to_dict().items() if k not in ("n_params", "d_vocab_out", "tokenizer_name", "device")}
    d.update(n_layers=8, n_heads=2, n_key_value_heads=1, d_head=16, rotary_dim=16, d_mlp=32, d_vocab=257, n_ctx=64,
             attn_types=["local", "global"] * 4, init_weights=True, seed=0, dtype=torch.float32)
    model = HookedTransformer(HookedTransformerConfig.from_dict(d), tokenizer=tokenizer).eval()
    spliced = SplicedModel(model, saes, "drop")
    world = World(preset, spliced, model.tokenizer, preset.sae_ids, "test")
    sae = saes[spliced.sites[0]]
    task_file = tmp / "bytes_task_gemma.json"
    task_file.write_text(json.dumps(task_records(seed=1, length=3)))
    return {
        "real_d_model": real.d_model, "real_n_layers": real.n_layers,
        "sites": spliced.sites, "sae_class": type(sae).__name__, "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae,
        "threshold_mean": float(sae.threshold.mean()), "model_kwargs": model_kwargs_for(saes, preset),
        "architecture": model.cfg.original_architecture, "softcap": model.cfg.output_logits_soft_cap,
        "cell": _run_steps(world, task_file, max_rows=16),
    }


def _missing_sae_part(tmp: Path) -> dict:
    from bench.errors import BenchError
    from bench.model.loading import load_world

    toml = tmp / "gpt2-missing.toml"
    toml.write_text('[gpt2-missing]\nmodel = "gpt2-small"\nsae_release = "gpt2-small-res-jb"\n'
                    'sae_ids = ["blocks.4.hook_resid_pre"]\n')  # a real id whose folder the cache lacks
    try:
        load_world(str(toml))
    except BenchError as exc:
        return {"message": str(exc)}
    return {"message": None}


def child_main(cache: Path, tmp: Path) -> dict:
    """Each part reports its own failure, so one broken path fails only its own tests."""
    import traceback
    import warnings

    warnings.filterwarnings("ignore")
    out: dict = {}
    tok = None
    def byte_tokenizer():  # the Gemma part borrows the cache's byte tokenizer
        from transformers import AutoTokenizer

        return tok if tok is not None else AutoTokenizer.from_pretrained("gpt2", local_files_only=True)  # the hand-made cache only

    for key, part in (("gpt2", lambda: _gpt2_part(cache, tmp)), ("gemma", lambda: _gemma_part(tmp, byte_tokenizer())),
                      ("missing", lambda: _missing_sae_part(tmp))):
        try:
            res = part()
            if key == "gpt2":
                res, tok = res
            out[key] = res
        except Exception:  # noqa: BLE001
            out[key] = {"error": traceback.format_exc()[-3000:]}
    return out


def _part(report: dict, key: str) -> dict:
    part = report[key]
    assert "error" not in part, part.get("error")
    return part


# ----- the tests ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("hub")
    cache = tmp / "hf" / "hub"
    write_gpt2_repo(cache)
    write_jb_sae_repo(cache)
    write_gemma_scope_repo(cache)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp / "hf"), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", PYTHONPATH=str(ROOT),
               OMP_NUM_THREADS="1")  # tiny tensors: threads only contend
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), str(cache), str(tmp)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gpt2_small_preset_loads_from_the_cache(report):
    g = _part(report, "gpt2")
    assert (g["model_name"], g["architecture"]) == ("gpt2", "GPT2LMHeadModel")
    assert (g["d_model"], g["n_layers"], g["d_vocab"]) == (D_MODEL, 12, 257)  # dims came from the cache's config.json
    assert g["sites"] == [f"blocks.{i}.hook_resid_pre" for i in GPT2_LAYERS]
    assert g["sae_classes"] == ["StandardSAE"] and g["d_sae"] == [D_SAE] * 4
    assert g["b_in_matches_file"] and g["sae_W_enc_matches_file"]
    assert g["bos_first"]


def test_gpt2_model_is_loaded_as_its_saes_were_trained(report):
    """gpt2-small-res-jb SAEs name center_writing_weights=True; the residual they read depends on it."""
    g = _part(report, "gpt2")
    assert g["model_kwargs"] == {"center_writing_weights": True}
    assert g["file_W_E_row_mean_abs"] > 1e-2  # the file's embeddings are not centred...
    assert g["W_E_row_mean_abs"] < 1e-5 and g["W_out_row_mean_abs"] < 1e-5  # ...the loaded model's are


def test_gpt2_attribution_patching_and_evaluator_end_to_end(report):
    c = _part(report, "gpt2")["cell"]
    assert not c["errors"]
    assert c["n_pos"] == 10 and c["n_universe"] > 0
    assert c["forward_calls"][0] >= 1 and c["backward_calls"][0] >= 1
    assert len(c["faithfulness"]) >= 4  # test and train forms of several circuit sizes, all finite


def test_gemma_scope_npz_sae_loads_through_the_gemma_2_loader(report):
    g = _part(report, "gemma")
    assert g["sites"] == ["blocks.6.hook_resid_post"] and g["sae_class"] == "JumpReLUSAE"
    assert (g["d_in"], g["d_sae"]) == (2304, 16384) == (g["real_d_model"], 16384)
    assert abs(g["threshold_mean"] - 0.5) < 1e-6 and g["model_kwargs"] == {}
    assert g["architecture"] == "Gemma2ForCausalLM" and g["softcap"] == 30.0
    c = g["cell"]
    assert c["n_pos"] == 7 and c["sizes"] == [10, 100]
    assert not c["errors"] and c["backward_calls"][0] >= 1 and len(c["faithfulness"]) == 4


def test_missing_sae_in_cache_is_one_line(report):
    msg = _part(report, "missing")["message"]
    assert msg and "could not fetch SAE gpt2-small-res-jb/blocks.4.hook_resid_pre" in msg and "\n" not in msg


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps(child_main(Path(sys.argv[1]), Path(sys.argv[2])), default=str))
