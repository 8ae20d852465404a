"""Simulating a method's run on the ``meta`` device: the peak bytes of live tensor storage after
every operation (a dispatch mode), and the matmul FLOPs of the same run.

FLOPs are counted by PyTorch's own per-op formulas (``torch.utils.flop_counter``'s registry, the
functions ``FlopCounterMode`` calls), applied in the tracker's dispatch. ``FlopCounterMode`` itself
is not stacked under the tracker: its module tracker hooks every module call and it re-dispatches
every op, and it kept captum's finished internal batches alive, so IG's simulated peak grew with the
number of batches. The totals are the same
(``tests/test_plan.py::test_flops_counted_in_the_tracker_equal_pytorchs_flop_counter``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

_KIND: dict = {}
# Output metadata and FLOPs of ops by their inputs' metadata, shared by every simulation: a meta
# kernel is Python (torch._refs / _meta_registrations), ~60 us an op, and a model's blocks repeat the
# same ops on the same shapes, so most of a plan's ops are answered here.
_MEMO: dict = {}
_VERIFY = [False]  # tests: answer nothing from the memo, compare every would-be answer with the kernel's


def _kind(func) -> str:
    """How an op's outputs relate to its inputs, from its schema: "fresh" (every output a new Tensor:
    no alias annotation, nothing mutated), "inplace" (mutates and returns its first argument, data
    only: not an ``inplace_view`` op such as ``unsqueeze_`` or ``resize_``), or "" (views, ``out=``,
    lists, scalars: always run by the kernel)."""
    r = _KIND.get(func)
    if r is None:
        import torch

        schema, rets = func._schema, func._schema.returns
        if rets and not schema.is_mutable and all(a.alias_info is None and str(a.type) == "Tensor" for a in rets):
            r = "fresh"
        elif (len(rets) == 1 and rets[0].alias_info is not None and rets[0].alias_info.is_write
              and schema.arguments and schema.arguments[0].alias_info is not None
              and rets[0].alias_info.before_set == schema.arguments[0].alias_info.before_set
              and torch.Tag.inplace in func.tags and torch.Tag.inplace_view not in func.tags):
            r = "inplace"
        else:
            r = ""
        _KIND[func] = r
    return r


def _meta_factory(kwargs) -> bool:
    """A factory op (no tensor inputs: ``empty``, ``arange``) asked for meta output."""
    dev = kwargs.get("device")
    return dev is not None and getattr(dev, "type", dev) == "meta"


def _key(x):
    """Hashable metadata of an op's arguments: a tensor by dtype, shape, strides and offset (what a meta
    kernel reads; the memo takes meta inputs only, so no device), anything else by type and value (``1``,
    ``1.0`` and ``True`` give different dtypes: equal in Python, not here); TypeError for what is not
    hashable."""
    import torch

    if isinstance(x, torch.Tensor):
        return (x.dtype, x.shape, x.stride(), x.storage_offset())
    if isinstance(x, (list, tuple)):
        return tuple([_key(y) for y in x])
    hash(x)
    return (type(x), x)


def _meta_of(t) -> tuple:
    """What the memo keeps of an output (and compares of an in-place op's argument): shape, strides,
    offset, storage size in elements, dtype (the arguments of :func:`_make`)."""
    return (tuple(t.shape), t.stride(), t.storage_offset(), t.untyped_storage().nbytes() // t.element_size(), t.dtype)


def _make(sh, sd, off, n, dt):
    """A meta tensor of this metadata, not a view: ``empty_strided`` where that gives the same storage
    size, else a new storage of ``n`` elements, strided (no autograd view bookkeeping either way:
    ``as_strided`` runs below autograd here)."""
    import torch

    need = 1 + sum((a - 1) * b for a, b in zip(sh, sd)) if all(sh) else 0
    if off == 0 and n == need:
        return torch.empty_strided(sh, sd, dtype=dt, device="meta")
    return torch.empty(n, dtype=dt, device="meta").as_strided(sh, sd, off)


def _inputs(args, kwargs) -> list:
    """The tensors an op reads: in ``args``, ``kwargs`` and their nested lists and tuples."""
    ins: list = []
    _tensors(args, ins)
    if kwargs:
        _tensors(kwargs.values(), ins)
    return ins


def _tensors(xs, out: list) -> None:
    """The tensors in ``xs`` and its nested lists and tuples, appended to ``out``."""
    import torch

    for x in xs:
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif isinstance(x, (list, tuple)):
            _tensors(x, out)


def _run(func, args, kwargs, ins: list):
    """``func``'s output and FLOPs: from the memo where the same overload has met inputs of the same
    metadata before (every input on meta), else from the kernel (and memoised).

    A fresh op's hit makes outputs of the kernel's outputs' metadata, storage size included, so the
    tracker counts the same bytes; an in-place op's hit returns its first argument. Marked never to be
    answered (always run by the kernel): a "fresh" op whose output shares an input's storage
    (``_unsafe_view``: the tracker must not count a view as new memory), and an in-place op that
    changed its argument's shape, strides or storage (a resize). ``_VERIFY``: every hit is also run by
    the kernel and compared (the tests' check)."""
    import torch
    from torch.utils.flop_counter import flop_registry

    kind = _kind(func)
    key = None
    if kind and (all([a.is_meta for a in ins]) if ins else _meta_factory(kwargs)):
        try:
            key = (func, torch.get_default_dtype(), _key(args), _key(tuple(kwargs.items())) if kwargs else ())
        except (TypeError, RuntimeError):  # not hashable (a callable), no strides (sparse): no memo
            key = None
    hit = _MEMO.get(key) if key is not None else None
    if hit and not _VERIFY[0]:
        single, metas, flops = hit
        if kind == "inplace":
            return args[0], flops
        outs = [_make(*m) for m in metas]
        return (outs[0] if single else tuple(outs)), flops
    before = _meta_of(args[0]) if kind == "inplace" and key is not None else None
    out = func(*args, **kwargs)
    count = flop_registry.get(func._overloadpacket)
    flops = count(*args, **kwargs, out_val=out) if count is not None else 0
    if key is not None and hit is None:
        if kind == "inplace":
            _MEMO[key] = (True, [], flops) if out is args[0] and _meta_of(args[0]) == before else False
            return out, flops
        single = isinstance(out, torch.Tensor)
        outs = [out] if single else list(out) if isinstance(out, (tuple, list)) else []
        stores = {o.untyped_storage()._cdata for o in outs if isinstance(o, torch.Tensor)}
        ok = (outs and all(isinstance(o, torch.Tensor) and o.device.type == "meta" for o in outs)
              and len(stores) == len(outs) and stores.isdisjoint(a.untyped_storage()._cdata for a in ins))
        _MEMO[key] = (single, [_meta_of(o) for o in outs], flops) if ok else False
    elif hit:  # _VERIFY: the memo's answer against the kernel's
        single, metas, mflops = hit
        if kind == "inplace":
            assert out is args[0] and _meta_of(args[0]) == before, func
        else:
            got = [_meta_of(o) for o in ([out] if single else out)]
            assert got == metas, (func, got, metas)
        assert mflops == flops, (func, mflops, flops)
    return out, flops


@functools.cache
def memo_mode_class():
    """A dispatch mode that answers ops from the memo and nothing else (no accounting): for the meta
    work around the simulations (a plan's stand-in task contexts, a forward per prompt count)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class MemoMode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            return _run(func, args, kwargs, _inputs(args, kwargs))[0]

    return MemoMode


def memoised(active: bool = True):
    """Context manager: meta ops inside are answered from the memo (see :func:`memo_mode_class`). It does
    nothing when not ``active`` (a model off meta: nothing to gain) or under another dispatch mode (a
    simulation's tracker memoises itself and must see every op; a FLOP counter or fake-tensor mode
    below would miss the ops a hit answers)."""
    import contextlib

    import torch

    if not active or torch._C._len_torch_dispatch_stack():
        return contextlib.nullcontext()
    return memo_mode_class()()


@functools.cache
def _tracker_class():
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    _expired = torch.UntypedStorage._expired
    stand_in_ops = {aten._local_scalar_dense.default, aten.nonzero.default, aten._to_copy.default,
                    aten.copy_.default, aten.equal.default, aten.is_nonzero.default}

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
            self.count_flops = False
            self.flops = 0
            self.vocab, self.d_sae = vocab, set(d_sae)
            self.weight_storages: set[int] = set()
            self.weight_storages_static: set[int] = set()
            self.n_ops = 0

        def _purge(self) -> None:
            expired = _expired  # torch.UntypedStorage._expired on the weak reference, without StorageWeakRef.expired's two frames
            dead = [k for k, v in self.live.items() if expired(v[0].cdata)]
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
                if self.count_flops:
                    self.nonzero_flops.append(self.flops)
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
            ins = _inputs(args, kwargs)
            handled, out = self._stand_in(func, args, kwargs) if func in stand_in_ops else (False, None)
            if not handled:
                out, flops = _run(func, args, kwargs, ins)
                if self.count_flops:
                    self.flops += flops
            self.n_ops += 1
            if self.n_ops % 512 == 0:
                self._purge()
            # A tensor computed only from weights (a transposed contiguous copy) is a weight copy.
            ws = self.weight_storages
            is_weight = [a.untyped_storage()._cdata in ws for a in ins]
            weight_derived = any(is_weight) and all(w or a.numel() <= 1 for w, a in zip(is_weight, ins))
            outs: list = []
            if isinstance(out, torch.Tensor):
                outs.append(out)
            elif isinstance(out, (tuple, list)):
                _tensors(out, outs)
            grew = False
            on_meta = self.device.type == "meta"
            for t in outs:
                if (t.is_meta if on_meta else t.device == self.device):
                    st = t.untyped_storage()
                    k = st._cdata
                    if k in self.live and _expired(self.live[k][0].cdata):  # address reused by a new storage
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
    """Run ``fn`` under the tracker (counting FLOPs if ``flops``); the model's and SAEs' storages are static."""
    Tracker = _tracker_class()
    tr = Tracker(device=device, nonzero_rows=nonzero_rows, vocab=sp.model.cfg.d_vocab,
                 d_sae=tuple(sp.d_sae(s) for s in sp.sites))
    statics = [*sp.model.parameters(), *sp.model.buffers()]
    for s in sp.saes.values():
        statics += [*s.parameters(), *s.buffers()]
    tr.register_static(statics)
    tr.count_flops = flops
    import warnings

    with tr, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. corrcoef's degrees-of-freedom warning on stand-in data
        out = fn()
    del out
    return Sim(tr.peak, dict(tr.peak_snapshot), float(tr.flops) if flops else 0.0, tr.nonzero_flops)
