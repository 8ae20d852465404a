"""``bench plan``: predicted peak memory and compute of every method, from the architecture alone.

No weights are read and nothing is fetched. The plan builds the preset's model and SAEs on PyTorch's
``meta`` device (tensors with shapes and dtypes but no storage), runs each method's own code on it
at the run's settings, and counts, with a dispatch mode (:class:`Tracker`), the bytes of every tensor
storage alive after each operation. The largest count is the predicted peak of tensor memory (what
``torch.cuda.max_memory_allocated`` reports on a GPU, or the resident memory above the loaded model
on a CPU). ``torch.utils.flop_counter`` counts the matmul FLOPs of the same runs.

So "what TransformerLens stores for a block" is not a hand-written formula that goes stale: it is
whatever TL 3.9 and this suite's code actually keep, read off the run. In words (Gemma-2, per block
whose output reaches a gradient, i.e. from the first SAE site on): the residual and its norm scales
(several ``[tokens, d_model]``), q/k/v after rotary (``[tokens, heads, d_head]``, k/v expanded to all
heads), attention scores, soft-cap and pattern (``[batch, heads, pos, pos]``, each a few times), the
gated MLP's hidden (three ``[tokens, d_mlp]``), and **a transposed copy of every weight matrix of the
block**: TL 3.9 computes ``F.linear(x, W.T.contiguous())`` (gated MLP, attention, unembed) and
autograd keeps the copy for the backward pass. With frozen weights that copy is a second model's worth
of memory for every layer from the first SAE site to the unembed (Gemma-2-9B fp32: 31 GB). Logits are
modelled as the code computes them (last position only, when ``SplicedModel.run`` returns
``[batch, 1, vocab]``); the other mode is run too, for comparison. Optimizer state (Adam: two moments
and a gradient per mask entry) and captum's expanded IG inputs are counted the same way, by running
the code.

The model: ``peak = static + resident + working`` where static is the model's parameters and buffers
(TL's layout: ``W_U`` is stored apart from ``W_E``) plus the SAEs', resident is what a task keeps
between methods (replacement latents, candidate masks), and working is the tracked peak of one
method's run. ``benchmarks/plan_validation.py`` measures working memory of the real methods on random
weights on the CPU and compares (``benchmarks/plan_validation.json``).

Compute: FLOPs of the dominant passes, multiplied by how often the method repeats them at the run's
settings (batches, lambda-steps, candidate chunks); seconds at a stated sustained throughput
(``--tflops``; matmuls only: elementwise work, softmax and the SAE nonlinearity are not counted).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Sustained matmul throughput assumed for seconds (TFLOP/s), per dtype: an H100-class GPU at ~70% of
# its dense fp32 (non-tensor-core) peak and ~40% of its dense bf16 tensor-core peak.
DEFAULT_TFLOPS = {"float32": 50.0, "bfloat16": 400.0, "float16": 400.0}
DEFAULT_SEQ_LEN = 40  # about the longest default task prompt (dict_keyerror) under a Gemma-like tokenizer
DEFAULT_CANDIDATES_PER_POS = 1000  # exact patching: candidate latents per (site, position); a stated assumption
GPU_RESERVE_GIB = 1.0  # CUDA context, cuBLAS workspace
GPU_FRAGMENTATION = 0.05  # caching-allocator slack on top of the tensor peak

# TransformerLens block layouts for presets whose TL config needs the hub (keys of HookedTransformerConfig).
FAMILIES: dict[str, dict] = {
    "gpt2": dict(act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard", eps=1e-5,
                 original_architecture="GPT2LMHeadModel", n_ctx=1024),
    "gemma2": dict(act_fn="gelu_pytorch_tanh", normalization_type="RMS", use_normalization_before_and_after=True,
                   positional_embedding_type="rotary", gated_mlp=True, attn_scores_soft_cap=50.0,
                   output_logits_soft_cap=30.0, use_local_attn=True, window_size=4096, final_rms=True,
                   rotary_base=10000.0, use_attn_scale=True, eps=1e-6, n_ctx=8192,
                   original_architecture="Gemma2ForCausalLM", initializer_range=0.02),
}
ARCH_KEYS = ("n_layers", "d_model", "d_mlp", "n_heads", "n_key_value_heads", "d_head", "d_vocab")
MODELLED = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching",
            "activation_magnitude", "random")


# ----- architecture -------------------------------------------------------------------------------

@dataclass
class Arch:
    """What the plan needs: TL config kwargs, the SAEs (hook, SAELens cfg dict), where each came from."""

    name: str
    cfg: dict
    saes: list[tuple[str, dict]]
    source: str
    checks: list[str] = field(default_factory=list)

    @property
    def d_sae(self) -> list[int]:
        return [int(c["d_sae"]) for _, c in self.saes]


def _tl_cfg_fields() -> set[str]:
    from transformer_lens import HookedTransformerConfig

    return {f.name for f in dataclasses.fields(HookedTransformerConfig) if f.init}


@contextlib.contextmanager
def _offline():
    """No network while reading configs: huggingface_hub reads its offline flag at call time from here."""
    import os

    from huggingface_hub import constants

    old_env, old_const = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _tl_config_offline(model: str) -> dict | None:
    """TransformerLens's own config for ``model``, if it loads without the hub (Gemma-2's is built in)."""
    from transformer_lens.loading_from_pretrained import get_pretrained_model_config

    try:
        with _offline():
            cfg = get_pretrained_model_config(model)
    except Exception:  # noqa: BLE001 - needs the hub (e.g. gpt2's config.json): use the preset's table
        return None
    keep = _tl_cfg_fields() - {"device", "dtype", "tokenizer_name", "n_params"}
    return {k: v for k, v in cfg.to_dict().items() if k in keep}


def _from_table(arch: dict, preset_name: str) -> dict:
    from bench.errors import UsageError

    fam = arch.get("family")
    if fam not in FAMILIES:
        raise UsageError(f"preset {preset_name!r}: arch.family {fam!r} is not one of {', '.join(FAMILIES)}")
    out = dict(FAMILIES[fam])
    out.update({k: v for k, v in arch.items() if k in _tl_cfg_fields()})
    if fam == "gemma2":
        out["attn_types"] = ["local", "global"] * (out["n_layers"] // 2) + ["local"] * (out["n_layers"] % 2)
        out.setdefault("rotary_dim", out["d_head"])
    return out


def _hook_of_id(sae_id: str) -> str:
    if sae_id.startswith("blocks."):
        return sae_id
    m = re.search(r"layer_(\d+)", sae_id)
    if m:
        return f"blocks.{int(m.group(1))}.hook_resid_post"
    raise ValueError(f"cannot tell the hook of SAE id {sae_id!r}")


def _sae_cfg_offline(release: str, sae_id: str) -> dict | None:
    """SAELens's config for ``release/sae_id`` when its loader derives it without the hub (Gemma Scope)."""
    try:
        from sae_lens.loading.pretrained_sae_loaders import get_conversion_loader_name, load_sae_config_from_huggingface

        if get_conversion_loader_name(release) != "gemma_2":  # the others read cfg.json from the hub
            return None
        with _offline():
            return load_sae_config_from_huggingface(release, sae_id, device="meta")
    except Exception:  # noqa: BLE001
        return None


def resolve_arch(preset, world_dir: str | Path | None = None) -> Arch:
    """The architecture of ``preset`` (name, TOML path or Preset), without weights or the hub."""
    from bench.presets import get_preset

    preset = get_preset(preset) if isinstance(preset, str) else preset
    if preset.is_embedded:
        from bench.loading import embedded_dir

        from bench.world.variants import model_dir_name, sae_dir_name

        root = Path(world_dir) if world_dir else embedded_dir()
        model_dir, sae_root = root / model_dir_name(preset.model), root / sae_dir_name(preset.sae_release)
        cfg = json.loads((model_dir / "config.json").read_text())
        ids = list(preset.sae_ids)
        if ids == ["*"]:
            ids = sorted(p.name for p in sae_root.iterdir() if (p / "cfg.json").is_file())
        saes = []
        for sae_id in ids:
            c = json.loads((sae_root / sae_id / "cfg.json").read_text())
            hook = (c.get("metadata") or {}).get("hook_name") or sae_id
            saes.append((hook, c))
        return Arch(preset.name, cfg, saes, f"world config {model_dir / 'config.json'}")

    table = dict(preset.arch)
    tl = _tl_config_offline(preset.model)
    checks = []
    if tl is not None:
        source = f"TransformerLens config of {preset.model!r} (offline)"
        for k in ARCH_KEYS:
            if k in table and k in tl and table[k] != tl[k]:
                checks.append(f"MISMATCH {k}: presets.toml {table[k]} vs TransformerLens {tl[k]}")
            elif k in table and k in tl:
                checks.append(f"ok {k}={tl[k]}")
        cfg = tl
    else:
        if not table:
            from bench.errors import UsageError

            raise UsageError(f"preset {preset.name!r}: TransformerLens needs the hub for its config and the "
                             f"preset has no [{preset.name}.arch] table")
        source = f"presets.toml [{preset.name}.arch] (TransformerLens's config of {preset.model!r} needs the hub)"
        cfg = _from_table(table, preset.name)
    saes = []
    for sae_id in preset.sae_ids:
        c = _sae_cfg_offline(preset.sae_release, sae_id)
        if c is not None:
            for k, tk in (("d_sae", "d_sae"), ("architecture", "sae_architecture"), ("d_in", "d_model")):
                if tk in table and c.get(k) != table[tk]:
                    checks.append(f"MISMATCH SAE {sae_id} {k}: presets.toml {table[tk]} vs SAELens {c.get(k)}")
            hook = (c.get("metadata") or {}).get("hook_name") or c.get("hook_name")
            checks.append(f"ok SAE {sae_id}: {c.get('architecture')} d_sae={c.get('d_sae')} at {hook} (SAELens, offline)")
        else:
            hook = _hook_of_id(sae_id)
            c = {"architecture": table.get("sae_architecture", "standard"), "d_in": cfg["d_model"],
                 "d_sae": int(table["d_sae"]), "metadata": {"hook_name": hook}}
        saes.append((hook, c))
    return Arch(preset.name, cfg, saes, source, checks)


# ----- the meta model -----------------------------------------------------------------------------

def _make_sae(c: dict, hook: str, d_in: int, dtype: str, device: str = "meta"):
    from sae_lens import SAE

    c = dict(c)
    c.update(d_in=d_in, dtype=dtype, device=device)
    meta = dict(c.get("metadata") or {})
    meta["hook_name"] = hook
    c["metadata"] = meta
    if c.get("normalize_activations") is None:
        c["normalize_activations"] = "none"
    cfg = SAE.get_sae_config_class_for_architecture(c["architecture"]).from_dict(c)
    return SAE.get_sae_class_for_architecture(cfg.architecture())(cfg)


def build_meta(arch: Arch, dtype: str = "float32", error_policy: str = "drop", device: str = "meta"):
    """The spliced model on the meta device: real modules, no storage (``device="cpu"``: random weights)."""
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from bench.spliced import SplicedModel

    kw = {k: v for k, v in arch.cfg.items() if k in _tl_cfg_fields()}
    kw.update(device=device, dtype=getattr(torch, dtype), tokenizer_name=None, seed=0)
    with torch.device(device):
        model = HookedTransformer(HookedTransformerConfig(**kw), move_to_device=False)
        saes = {hook: _make_sae(c, hook, model.cfg.d_model, dtype, device) for hook, c in arch.saes}
    sp = SplicedModel(model, saes, error_policy)
    if error_policy == "mean":
        sp.error_means = {s: torch.zeros(model.cfg.n_ctx, model.cfg.d_model, device=device, dtype=getattr(torch, dtype))
                          for s in sp.sites}
    return sp


def static_bytes(sp) -> dict[str, int]:
    def nbytes(mod) -> int:
        return sum(t.numel() * t.element_size() for t in [*mod.parameters(), *mod.buffers()])

    return {"model": nbytes(sp.model), "saes": sum(nbytes(s) for s in sp.saes.values())}


# ----- the tracker --------------------------------------------------------------------------------

def _tracker_class():
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    aten = torch.ops.aten

    class Tracker(TorchDispatchMode):
        """Live tensor bytes on one device after every aten op; data-dependent ops get stand-ins on meta.

        ``nonzero`` on meta returns ``nonzero_rows`` rows (the method's chunk of candidates),
        ``.item()`` returns 1, copies to the CPU return uninitialised CPU tensors. Storages that
        exist before the mode (weights) are never counted.
        """

        def __init__(self, device: str = "meta", nonzero_rows: int = 1, vocab: int = -1, d_sae: tuple = ()):
            super().__init__()
            self.device = torch.device(device)
            self.live: dict[int, tuple] = {}
            self.cur = self.peak = 0
            self.peak_snapshot: dict[str, int] = {}
            self.nonzero_rows = nonzero_rows
            self.nonzero_flops: list[float] = []
            self.flop_counter = None
            self.vocab, self.d_sae = vocab, set(d_sae)
            self.weight_storages: set[int] = set()
            self.weight_storages_static: set[int] = set()
            self.n_ops = 0

        def _purge(self) -> None:
            dead = [k for k, v in self.live.items() if v[0].expired()]
            for k in dead:
                self.cur -= self.live.pop(k)[1]
                self.weight_storages.discard(k)

        def _category(self, t, weight_derived: bool) -> str:
            if weight_derived:
                return "weight copies"
            shape = tuple(t.shape)
            if shape and (shape[-1] == self.vocab or shape[0] == self.vocab):
                return "logits"
            if shape and shape[-1] in self.d_sae:
                return "SAE latents/masks"
            return "activations"

        def _stand_in(self, func, args, kwargs):
            if func is aten._local_scalar_dense.default and args[0].device.type == "meta":
                return True, (True if args[0].dtype == torch.bool else 1)
            if func in (aten.nonzero.default,) and args[0].device.type == "meta":
                if self.flop_counter is not None:
                    self.nonzero_flops.append(self.flop_counter.get_total_flops())
                return True, torch.empty((self.nonzero_rows, args[0].dim()), dtype=torch.long, device="meta")
            if func is aten._to_copy.default and args[0].device.type == "meta":
                dev = kwargs.get("device")
                if dev is not None and torch.device(dev).type != "meta":
                    return True, torch.empty(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype, device=dev)
            if func is aten.copy_.default and args[1].device.type == "meta" and args[0].device.type != "meta":
                return True, args[0]
            if func in (aten.equal.default, aten.is_nonzero.default) and any(
                    isinstance(a, torch.Tensor) and a.device.type == "meta" for a in args):
                return True, True
            return False, None

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            handled, out = self._stand_in(func, args, kwargs)
            if not handled:
                out = func(*args, **kwargs)
            self.n_ops += 1
            if self.n_ops % 512 == 0:
                self._purge()
            ins = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
            # A tensor computed only from weights (a transposed contiguous copy) is a weight copy.
            weight_derived = bool(ins) and all(
                a.untyped_storage()._cdata in self.weight_storages or a.numel() <= 1 for a in ins
            ) and any(a.untyped_storage()._cdata in self.weight_storages for a in ins)
            grew = False
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and t.device == self.device:
                    st = t.untyped_storage()
                    k = st._cdata
                    if k in self.live and self.live[k][0].expired():  # address reused by a new storage
                        self.cur -= self.live.pop(k)[1]
                        self.weight_storages.discard(k)
                    if k in self.live or k in self.weight_storages_static:
                        continue
                    if weight_derived:
                        self.weight_storages.add(k)
                    self.live[k] = (StorageWeakRef(st), st.nbytes(), self._category(t, weight_derived))
                    self.cur += st.nbytes()
                    grew = True
            # ``cur`` over-counts storages freed since the last purge: purge before calling a new peak.
            if grew and self.cur > self.peak:
                self._purge()
                if self.cur > self.peak:
                    self.peak = self.cur
                    snap: dict[str, int] = {}
                    for _, n, cat in self.live.values():
                        snap[cat] = snap.get(cat, 0) + n
                    self.peak_snapshot = snap
            return out

        def register_static(self, tensors) -> None:
            self.weight_storages_static = {t.untyped_storage()._cdata for t in tensors}
            self.weight_storages |= self.weight_storages_static

    return Tracker


@dataclass
class Sim:
    peak: int
    breakdown: dict[str, int]
    flops: float
    nonzero_flops: list[float] = field(default_factory=list)


def simulate(sp, fn: Callable[[], object], nonzero_rows: int = 1, device: str = "meta", flops: bool = True) -> Sim:
    return _simulate(sp, fn, nonzero_rows=nonzero_rows, device=device, flops=flops)


def _simulate(sp, fn: Callable[[], object], nonzero_rows: int = 1, device: str = "meta", flops: bool = True) -> Sim:
    """Run ``fn`` under the tracker (and a FLOP counter); the model's and SAEs' storages are static."""
    from torch.utils.flop_counter import FlopCounterMode

    Tracker = _tracker_class()
    tr = Tracker(device=device, nonzero_rows=nonzero_rows, vocab=sp.model.cfg.d_vocab,
                 d_sae=tuple(sp.d_sae(s) for s in sp.sites))
    statics = [*sp.model.parameters(), *sp.model.buffers()]
    for s in sp.saes.values():
        statics += [*s.parameters(), *s.buffers()]
    tr.register_static(statics)
    fc = FlopCounterMode(display=False) if flops else contextlib.nullcontext()
    tr.flop_counter = fc if flops else None
    import warnings

    with fc, tr, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. corrcoef's degrees-of-freedom warning on stand-in data
        out = fn()
    del out
    return Sim(tr.peak, dict(tr.peak_snapshot), float(fc.get_total_flops()) if flops else 0.0, tr.nonzero_flops)


# ----- settings and contexts ----------------------------------------------------------------------

@dataclass
class Settings:
    n_train: int
    n_test: int
    seq_len: int = DEFAULT_SEQ_LEN
    dtype: str = "float32"
    error_policy: str = "drop"
    ablation: str = "mean"
    max_rows: int = 1024  # the evaluator's rows per forward
    grid_per_decade: int = 5
    n_knockout: int = 8
    n_headline: int = 4
    candidates_per_pos: int = DEFAULT_CANDIDATES_PER_POS
    methods: tuple[str, ...] = MODELLED
    method_options: dict = field(default_factory=dict)
    gpu_memory_gib: float = 80.0
    tflops: float | None = None
    logits: str = "code"  # "code": as SplicedModel computes them; "all" / "last": forced

    @classmethod
    def defaults(cls, **kw) -> Settings:
        from bench.harness import RunConfig

        rc = RunConfig()
        base = dict(n_train=rc.n_train, n_test=rc.n_test, max_rows=getattr(rc, "max_rows", 1024),
                    error_policy=rc.error_policy, ablation=rc.ablation, grid_per_decade=rc.grid_per_decade,
                    n_knockout=rc.n_knockout, n_headline=len(rc.headline_targets))
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    @property
    def throughput(self) -> float:
        return (self.tflops or DEFAULT_TFLOPS[self.dtype]) * 1e12


def method_instance(name: str, options: dict):
    from bench.harness import RunConfig, build_method

    return build_method(name, RunConfig(method_options={name: options} if options else {}))


def _data(n: int, pos: int, vocab: int, seed: int = 0):
    import torch

    from bench.data import TaskData

    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, vocab, (n, pos), generator=g)
    clean[:, 0] = 0
    patch = clean.clone()
    patch[:, pos // 2] = (patch[:, pos // 2] + 1) % vocab
    return TaskData("plan", "0", clean, patch, torch.full((n,), 1), torch.full((n,), 2), ["plan"] * n, "train")


def make_context(sp, st: Settings, n: int):
    """A method context on ``sp`` with ``n`` train prompts, set up by the harness's own functions."""
    from bench.ablation import candidates, make_replacement
    from bench.api import MethodContext

    cache = sp.__dict__.setdefault("_plan_contexts", {})
    key = (n, st.seq_len, st.ablation)
    if key not in cache:
        data = _data(n, st.seq_len, sp.model.cfg.d_vocab)
        repl = make_replacement(st.ablation, sp, data, data)
        cands = candidates(sp.latents(data.clean), repl)
        cache[key] = MethodContext(sp, data, repl, cands, seed=0)
    return cache[key]


@contextlib.contextmanager
def logits_mode(sp, mode: str):
    """Force the unembedding onto all positions or the last one, whatever ``SplicedModel`` does."""
    import torch

    if mode == "code":
        yield
        return
    model = sp.model
    if mode == "all" and not hasattr(type(sp), "_head"):
        if code_logits_mode() != "all":
            raise RuntimeError("cannot force all-position logits: SplicedModel has no _head to replace")
        yield
        return
    if mode == "all":
        def full_head(resid):
            if model.cfg.normalization_type is not None:
                resid = model.ln_final(resid)
            logits = model.unembed(resid)
            cap = getattr(model.cfg, "output_logits_soft_cap", 0.0) or 0.0
            return cap * torch.tanh(logits / cap) if cap > 0 else logits

        sp._head = full_head
        try:
            yield
        finally:
            del sp._head
        return
    if mode == "last":
        h = model.unembed.register_forward_pre_hook(lambda mod, args: (args[0][:, -1:],))
        try:
            yield
        finally:
            h.remove()
        return
    yield


def code_logits_mode() -> str:
    """'last' if ``SplicedModel.run`` returns last-position logits ``[batch, 1, vocab]``, else 'all'."""
    import torch

    arch = Arch("probe", dict(FAMILIES["gpt2"], n_layers=1, d_model=8, d_mlp=16, n_heads=2, d_head=4, d_vocab=11,
                              n_ctx=8), [("blocks.0.hook_resid_post", {"architecture": "standard", "d_sae": 8})], "probe")
    sp = build_meta(arch)
    with torch.no_grad():
        out = sp.run(torch.zeros(1, 3, dtype=torch.long))
    return "last" if out.shape[1] == 1 else "all"


# ----- per-method plans ---------------------------------------------------------------------------

@dataclass
class MethodPlan:
    method: str
    rows: int  # prompt rows of the dominant pass
    grad: bool
    working: int  # bytes above static + resident
    breakdown: dict[str, int]
    working_alt: int | None  # the other logits mode
    flops: float  # the method's discover, at the run's settings
    eval_flops: float  # the evaluator's work for this method's cell
    notes: str = ""

    def total(self, static: int, resident: int) -> int:
        return static + resident + self.working


def _first_site_blocks(sp) -> int:
    def start(site: str) -> int:  # the first block whose input depends on the site's latents
        m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_(pre|post)", site)
        return 0 if m is None else int(m.group(1)) + (m.group(2) == "post")

    return sp.model.cfg.n_layers - min(start(s) for s in sp.sites)


def plan_method(sp, st: Settings, name: str, alt_mode: str | None) -> MethodPlan:
    """Simulate ``name`` at the settings; FLOPs scaled to the full run."""
    method = method_instance(name, st.method_options.get(name, {}))
    cfg = method.config
    n, P = st.n_train, st.seq_len

    def run_sim(mode: str, full: bool) -> tuple[Sim, dict]:
        with logits_mode(sp, mode):
            return _sim_one(sp, st, name, method, cfg, n, P, full)

    sim, info = run_sim(st.logits, True)
    alt = run_sim(alt_mode, False)[0].peak if alt_mode else None
    return MethodPlan(name, info["rows"], info["grad"], sim.peak, sim.breakdown, alt, info["flops"](sim),
                      0.0, info.get("notes", ""))


def _sim_one(sp, st: Settings, name: str, method, cfg, n: int, P: int, full: bool = True):
    """One method's dominant computation under the tracker; ``full``: also count FLOPs (and their units)."""
    import torch

    S = {s: sp.d_sae(s) for s in sp.sites}

    def simulate(sp, fn, **kw):
        return _simulate(sp, fn, flops=full, **kw)

    if name == "attribution_patching":
        bs = min(cfg.batch_size, n)
        ctx = make_context(sp, st, bs)
        sim = simulate(sp, lambda: method.discover(ctx))
        return sim, {"rows": bs, "grad": True, "flops": lambda s: s.flops * math.ceil(n / bs)}
    if name == "integrated_gradients":
        b = min(cfg.batch_size, n)
        ctx = make_context(sp, st, b)
        sim = simulate(sp, lambda: method.discover(ctx))
        rows = min(cfg.n_steps * b, max(b, cfg.internal_batch_size))
        return sim, {"rows": rows, "grad": True, "flops": lambda s: s.flops * math.ceil(n / b),
                     "notes": f"{cfg.path}, {cfg.n_steps} steps, {len(sp.sites) if cfg.path == 'per_sae' else 1} path(s) per batch"}
    if name == "binary_mask":
        ctx = make_context(sp, st, n)
        grid = cfg.grid()
        # The adaptive probe trains its whole ladder together: with fewer lambdas in the grid (quick), it is the peak.
        probe_grid = cfg.probe_ladder() if getattr(cfg, "uses_probe", False) else []
        sim_grid = probe_grid if len(probe_grid) > len(grid) else grid
        ld_ref = torch.zeros(n, device=sp.device)
        rows_per = min(cfg.batch_size, n)
        group = len(sim_grid) if cfg.sweep == "batched" and cfg.max_rows == 0 else (
            1 if cfg.sweep == "sequential" else max(1, cfg.max_rows // rows_per))
        sim = simulate(sp, lambda: method.sweep(ctx, sim_grid, ld_ref, steps=2))
        # FLOPs: a lambda-step is one forward + backward of batch_size rows; a logged step adds a forward.
        unit = simulate(sp, lambda: _ap_unit(sp, ctx, rows_per)) if full else sim
        fwd = simulate(sp, lambda: _fwd_unit(sp, ctx, rows_per)) if full else sim
        total = round(1.1 * cfg.steps)
        lam_steps = len(grid) * total
        n_logs = len({round(k * total / cfg.n_log) for k in range(cfg.n_log)} | {total}) + 1 if cfg.n_log else 0
        probe = 0
        if getattr(cfg, "uses_probe", False) and hasattr(cfg, "probe_ladder"):
            probe = len(cfg.probe_ladder()) * round(1.1 * cfg.probe_steps)
        L = min(group, len(sim_grid))
        mask_bytes = L * (P if cfg.granularity == "position" else 1) * sum(S.values()) * 4
        notes = (f"{len(grid)} lambdas x {total} steps, {L} lambdas per forward; mask logits + grad + Adam moments "
                 f"{4 * mask_bytes / GIB:.2f} GiB (in 'SAE lat./masks')"
                 + (f", + probe {len(cfg.probe_ladder())} lambdas x {round(1.1 * cfg.probe_steps)} steps" if probe else ""))
        return sim, {"rows": L * rows_per, "grad": True, "notes": notes,
                     "flops": lambda s: unit.flops * (lam_steps + probe) + fwd.flops * (len(grid) * n_logs + math.ceil(n / 64) * 64 / rows_per)}
    if name == "activation_patching":
        m = min(cfg.max_prompts, n)
        ctx = make_context(sp, st, m)
        per_chunk = max(1, cfg.forward_batch // m)
        sim = simulate(sp, lambda: method.discover(ctx), nonzero_rows=per_chunk)
        marks = sim.nonzero_flops + [sim.flops]
        per_site = [marks[i + 1] - marks[i] for i in range(len(sp.sites))] if len(marks) > len(sp.sites) else []
        cands = min(st.candidates_per_pos, min(S.values())) * (P - 1)
        chunks = math.ceil(cands / per_chunk)
        base = marks[0] if marks else 0.0
        return sim, {"rows": per_chunk * m, "grad": False,
                     "notes": f"{cands} candidates per site (assumed {st.candidates_per_pos}/position), {chunks} chunks of {per_chunk} per site",
                     "flops": lambda s: base + sum(f * chunks for f in per_site)}
    if name == "activation_magnitude":
        bs = min(getattr(cfg, "batch_size", 64), n)
        ctx = make_context(sp, st, bs)
        sim = simulate(sp, lambda: method.discover(ctx))
        return sim, {"rows": bs, "grad": False, "flops": lambda s: s.flops * math.ceil(n / bs)}
    if name == "random":
        ctx = make_context(sp, st, 2)
        sim = simulate(sp, lambda: method.discover(ctx))
        return sim, {"rows": 0, "grad": False, "flops": lambda s: 0.0}
    raise KeyError(name)


def _ap_unit(sp, ctx, rows: int):
    """One forward + backward of ``rows`` prompts with a float mask at every site (a mask / AP step)."""
    import torch

    masks = {s: torch.ones(ctx.train.n_pos, sp.d_sae(s), device=sp.device, requires_grad=True) for s in ctx.sites}
    ld = ctx.masked_metric(masks, ctx.train.subset(list(range(rows))), 0)
    ld.sum().backward()


def _fwd_unit(sp, ctx, rows: int):
    import torch

    with torch.no_grad():
        sp.run(ctx.train.clean[:rows])


def plan_evaluator(sp, st: Settings, alt_mode: str | None) -> tuple[MethodPlan, float]:
    """The evaluator's stacked forward (``max_rows`` rows, bool masks per row); FLOPs per evaluated row."""
    from bench.evaluate import Evaluator, SplitData

    ctx = make_context(sp, st, st.n_test)
    universe = {s: c.clone() for s, c in ctx.candidates.items()}
    per = max(1, st.max_rows // st.n_test)

    def fn():
        ev = Evaluator(sp, {"test": SplitData(ctx.train, ctx.replacement)}, universe, max_rows=st.max_rows)
        return ev.lds([universe] * per, "test")

    def run(mode, flops):
        with logits_mode(sp, mode):
            return simulate(sp, fn, flops=flops)

    sim = run(st.logits, False)
    alt = run(alt_mode, False).peak if alt_mode else None
    row = simulate(sp, lambda: _fwd_unit(sp, ctx, 1))
    return (MethodPlan("evaluator", min(st.max_rows, per * st.n_test), False, sim.peak, sim.breakdown, alt, 0.0, 0.0,
                       "every circuit's stacked forward (per method cell: sizes x (test + complement + train) + knockouts)"),
            row.flops)


def plan_setup(sp, st: Settings) -> tuple[int, int]:
    """Task setup (latents of every train prompt for the candidates, the ablation's means): peak and resident."""
    holder = {}

    def fn():
        holder["ctx"] = make_context(sp, st, st.n_train)

    sim = simulate(sp, fn)
    ctx = holder["ctx"]
    resident = sum(v.numel() * v.element_size() for v in ctx.replacement.values.values())
    resident += 2 * sum(c.numel() * c.element_size() for c in ctx.candidates.values())  # train candidates + universe
    return sim.peak, resident


def eval_rows_per_cell(st: Settings, n_universe: int) -> int:
    """Rows the evaluator runs for one method cell: every size on test, complement and train, plus knockouts."""
    from bench.sizes import size_grid

    try:
        n_sizes = len(size_grid(n_universe, st.grid_per_decade))
    except Exception:  # noqa: BLE001
        n_sizes = max(1, round(st.grid_per_decade * math.log10(max(10, n_universe))))
    return n_sizes * (2 * st.n_test + st.n_train) + (st.n_headline + 1) * 2 * st.n_knockout * st.n_test


@dataclass
class Plan:
    preset: str
    arch: Arch
    settings: Settings
    code_logits: str
    static: dict[str, int]
    setup_peak: int
    resident: int
    methods: list[MethodPlan]
    per_block_token: float  # bytes kept per block per token by a gradient pass (attribution patching)

    @property
    def static_total(self) -> int:
        return sum(self.static.values())

    def fits(self, working: int) -> str:
        total = self.static_total + self.resident + working
        cap = self.settings.gpu_memory_gib * GIB
        if total * (1 + GPU_FRAGMENTATION) + GPU_RESERVE_GIB * GIB <= cap:
            return "yes"
        return "tight" if total <= cap else "no"

    def to_dict(self) -> dict:
        st = self.settings
        return {
            "preset": self.preset, "architecture_source": self.arch.source, "checks": self.arch.checks,
            "architecture": {k: self.arch.cfg.get(k) for k in (*ARCH_KEYS, "n_ctx", "original_architecture")},
            "saes": [{"hook": h, "d_sae": int(c["d_sae"]), "architecture": c.get("architecture")} for h, c in self.arch.saes],
            "settings": dataclasses.asdict(st),
            "logits_in_code": self.code_logits,
            "bytes": {"static": self.static, "resident": self.resident, "setup_peak_working": self.setup_peak},
            "per_block_per_token_bytes": self.per_block_token,
            "gpu_memory_gib": st.gpu_memory_gib, "tflops": st.throughput / 1e12,
            "methods": [{
                "method": m.method, "rows": m.rows, "grad": m.grad, "working_bytes": m.working,
                "peak_bytes": m.total(self.static_total, self.resident), "breakdown_at_peak": m.breakdown,
                "peak_bytes_other_logits_mode": (None if m.working_alt is None
                                                 else m.working_alt + self.static_total + self.resident),
                "flops": m.flops, "eval_flops": m.eval_flops,
                "seconds": (m.flops + m.eval_flops) / st.throughput, "fits": self.fits(m.working), "notes": m.notes,
            } for m in self.methods],
        }


def make_plan(preset, settings: Settings | None = None, world_dir=None) -> Plan:
    import torch

    from bench.presets import get_preset

    p = get_preset(preset) if isinstance(preset, str) else preset
    st = settings or Settings.defaults(dtype=p.dtype)
    arch = resolve_arch(p, world_dir)
    sp = build_meta(arch, st.dtype, st.error_policy)
    code = code_logits_mode()
    if st.logits == "code":
        alt = "all" if code == "last" else "last"
    else:
        alt = None
    static = static_bytes(sp)
    setup_peak, resident = plan_setup(sp, st)
    torch.manual_seed(0)
    methods = []
    for name in st.methods:
        if name not in MODELLED:
            continue
        methods.append(plan_method(sp, st, name, alt))
    ev, row_flops = plan_evaluator(sp, st, alt)
    n_universe = sum(min(st.candidates_per_pos, sp.d_sae(s)) * (st.seq_len - 1) for s in sp.sites)
    per_cell = eval_rows_per_cell(st, n_universe) * row_flops
    for m in methods:
        m.eval_flops = per_cell
    ev.flops = 0.0
    methods.append(ev)
    ap = next((m for m in methods if m.method == "attribution_patching"), None)
    per_block = 0.0
    if ap is not None:
        tokens = ap.rows * st.seq_len
        per_block = ap.breakdown.get("activations", 0) / max(1, tokens * _first_site_blocks(sp))
    return Plan(p.name, arch, st, code, static, setup_peak, resident, methods, per_block)


# ----- output -------------------------------------------------------------------------------------

def _gib(b: float) -> str:
    return f"{b / GIB:.1f}" if b >= 0.095 * GIB else f"{b / GIB:.2f}"


def _flops(f: float) -> str:
    return f"{f:.2e}"


def _secs(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def format_plan(plan: Plan) -> str:
    st, a = plan.settings, plan.arch
    c = a.cfg
    other = "all positions" if plan.code_logits == "last" else "last position"
    lines = [
        f"# bench plan: {plan.preset} ({st.dtype})",
        "",
        f"Architecture ({a.source}): {c.get('n_layers')} layers, d_model {c.get('d_model')}, d_mlp {c.get('d_mlp')}, "
        f"{c.get('n_heads')} heads x d_head {c.get('d_head')}"
        + (f", {c.get('n_key_value_heads')} KV heads" if c.get("n_key_value_heads") else "")
        + f", vocab {c.get('d_vocab')}; SAEs: " + ", ".join(f"{h} (d_sae {int(sc['d_sae'])}, {sc.get('architecture')})" for h, sc in a.saes),
    ]
    bad = [x for x in a.checks if x.startswith("MISMATCH")]
    if a.checks:
        lines.append(f"Cross-checks: {len(a.checks) - len(bad)} ok" + (f"; {'; '.join(bad)}" if bad else ""))
    lines += [
        f"Settings: {st.n_train} train / {st.n_test} test prompts of {st.seq_len} tokens, ablation {st.ablation}, "
        f"error {st.error_policy}, evaluator max_rows {st.max_rows}; logits: the code computes the "
        f"{'last position only' if plan.code_logits == 'last' else 'all positions'}.",
        f"Static: model {_gib(plan.static['model'])} GiB (parameters + buffers, TL layout) + SAEs {_gib(plan.static['saes'])} GiB; "
        f"resident per task {_gib(plan.resident)} GiB; task setup peaks at {_gib(plan.setup_peak)} GiB above static. "
        f"A gradient pass keeps {plan.per_block_token / 1024:.0f} KiB per block per token of activations "
        "(plus the weight copies).",
        "",
        f"| method | rows/pass | grad | peak GiB | weight copies | activations | SAE lat./masks | logits | "
        f"peak if logits at {other} | FLOPs (discover) | time @ {st.throughput / 1e12:.0f} TFLOP/s | fits {st.gpu_memory_gib:g} GiB |",
        "|---|---:|:-:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for m in plan.methods:
        b = m.breakdown
        alt = "" if m.working_alt is None else _gib(m.working_alt + plan.static_total + plan.resident)
        t = _secs((m.flops + m.eval_flops) / st.throughput) if m.method != "evaluator" else ""
        lines.append(
            f"| {m.method} | {m.rows} | {'yes' if m.grad else 'no'} | {_gib(m.total(plan.static_total, plan.resident))} | "
            f"{_gib(b.get('weight copies', 0))} | {_gib(b.get('activations', 0))} | {_gib(b.get('SAE latents/masks', 0))} | "
            f"{_gib(b.get('logits', 0))} | {alt} | {_flops(m.flops) if m.method != 'evaluator' else ''} | {t} | "
            f"{plan.fits(m.working)} |")
    lines += ["", "Time includes the evaluator's work for the method's cell. Notes:"]
    lines += [f"- {m.method}: {m.notes}" for m in plan.methods if m.notes]
    lines += [
        f"- 'fits': peak x {1 + GPU_FRAGMENTATION:.2f} + {GPU_RESERVE_GIB:g} GiB (CUDA context, allocator) within "
        f"--gpu-memory; 'tight': only the bare peak fits.",
        "- Peaks come from running the code on the meta device (no weights); FLOPs count matmuls only.",
        f"- Not simulated: loading. from_pretrained holds the HF checkpoint and the TL copy in host RAM at once "
        f"(about {_gib(2 * plan.static['model'])} GiB for a hub preset).",
    ]
    return "\n".join(lines)


def _method_options(items: list[str]) -> dict[str, dict]:
    """``--option METHOD.KEY=VALUE`` items, parsed as every other command parses them."""
    from bench.commands import _parse_options

    return _parse_options(items)


def add_plan_command(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plan", help="predicted peak memory and compute per method, from the architecture alone")
    p.add_argument("--preset", default="embedded", help="preset name or TOML file (default: embedded)")
    p.add_argument("--world", default=None, help="embedded-world directory (default: the shipped one)")
    p.add_argument("--dtype", default=None, choices=sorted(DTYPE_BYTES), help="default: the preset's")
    p.add_argument("--gpu-memory", type=float, default=80.0, help="GPU memory in GiB (default: 80)")
    p.add_argument("--tflops", type=float, default=None,
                   help=f"sustained TFLOP/s for seconds (default: {DEFAULT_TFLOPS['float32']:g} fp32, "
                        f"{DEFAULT_TFLOPS['bfloat16']:g} bf16)")
    p.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help=f"prompt length in tokens (default {DEFAULT_SEQ_LEN})")
    p.add_argument("--n-train", type=int, default=None, help="train prompts (default: the run's)")
    p.add_argument("--n-test", type=int, default=None, help="test prompts (default: the run's)")
    p.add_argument("--max-rows", type=int, default=None, help="evaluator rows per forward (default: the run's)")
    p.add_argument("--error-policy", default=None, help="drop, keep or mean (default: the run's)")
    p.add_argument("--ablation", default=None, help="mean, zero or counterfactual (default: the run's)")
    p.add_argument("--methods", default=None, help="comma list (default: every modelled method)")
    p.add_argument("--candidates-per-position", type=int, default=DEFAULT_CANDIDATES_PER_POS,
                   help="exact patching: candidate latents per site and position (default %(default)s)")
    p.add_argument("--logits", default="code", choices=("code", "all", "last"),
                   help="logits as the code computes them (default), or forced to all / the last position")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE", help="method option (JSON value)")
    p.add_argument("--fit", action="store_true",
                   help="fit every method's batch-like options and the evaluator's max-rows to --gpu-memory "
                        "(what a run with --max-memory does; bench.budget) and plan at them")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_plan)
    return p


def settings_from_args(args, preset_dtype: str) -> Settings:
    methods = tuple(x.strip() for x in args.methods.split(",")) if args.methods else None
    return Settings.defaults(
        n_train=args.n_train, n_test=args.n_test, seq_len=args.seq_len, dtype=args.dtype or preset_dtype,
        max_rows=args.max_rows, error_policy=args.error_policy, ablation=args.ablation,
        candidates_per_pos=args.candidates_per_position, methods=methods, method_options=_method_options(args.option),
        gpu_memory_gib=args.gpu_memory, tflops=args.tflops, logits=args.logits)


def cmd_plan(args) -> int:
    from bench.presets import get_preset

    preset = get_preset(args.preset)
    st = settings_from_args(args, preset.dtype)
    fitted = None
    if getattr(args, "fit", False):
        st, fitted = fit_settings(preset, st, args.world, max_rows_pinned=args.max_rows is not None)
    plan = make_plan(preset, st, world_dir=args.world)
    if args.json:
        d = plan.to_dict()
        if fitted is not None:
            d["fit"] = {"budget_gib": fitted.budget_gib, "options": fitted.options,
                        "predicted_peak_bytes": {m: f.peak for m, f in fitted.methods.items()}}
        print(json.dumps(d, indent=2, default=str))
    else:
        print(format_plan(plan) + ("" if fitted is None else "\n\nFitted to --gpu-memory (bench.budget):\n"
                                   + "\n".join(f"- {line}" for line in fitted.lines())))
    return 0


def fit_settings(preset, st: Settings, world_dir=None, max_rows_pinned: bool = False):
    """``st`` with the batch-like options :mod:`bench.budget` fits to ``st.gpu_memory_gib``; and the fit."""
    from bench.budget import EVALUATOR, fit
    from bench.harness import RunConfig

    rc = RunConfig(preset=preset.name, methods=tuple(m for m in st.methods if m in MODELLED) or ("random",),
                   n_train=st.n_train, n_test=st.n_test, error_policy=st.error_policy, ablation=st.ablation,
                   max_rows=st.max_rows, method_options=st.method_options, world_dir=world_dir)
    fitted = fit(preset, rc, st.gpu_memory_gib, dtype=st.dtype, seq_len=st.seq_len, max_rows_pinned=max_rows_pinned)
    opts = {m: {**o, **st.method_options.get(m, {})} for m, o in fitted.options.items() if m != EVALUATOR}
    return dataclasses.replace(st, method_options=opts, max_rows=fitted.options[EVALUATOR]["max_rows"]), fitted


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.plan [options]`` (the same as ``bench plan [options]`` once wired into the CLI)."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_plan_command(sub)
    args = parser.parse_args(argv if argv[:1] == ["plan"] else ["plan", *argv])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
