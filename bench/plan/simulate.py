"""Simulating a method's run on the ``meta`` device: the peak bytes of live tensor storage after
every operation (a dispatch mode), and the matmul FLOPs of the same run.

FLOPs are counted by PyTorch's own per-op formulas (``torch.utils.flop_counter``'s registry, the
functions ``FlopCounterMode`` calls), applied in the tracker's dispatch. ``FlopCounterMode`` itself
is not stacked under the tracker: its module tracker hooks every module call and it re-dispatches
every op, and it kept captum's finished internal batches alive, so IG's simulated peak grew with the
number of batches. The totals are the same
(``tests/test_plan.py::test_flops_counted_in_the_tracker_equal_pytorchs_flop_counter``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


def _tracker_class():
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.flop_counter import flop_registry

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
            self.count_flops = False
            self.flops = 0
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
            handled, out = self._stand_in(func, args, kwargs)
            if not handled:
                out = func(*args, **kwargs)
                if self.count_flops:
                    count = flop_registry.get(func._overloadpacket)
                    if count is not None:
                        self.flops += count(*args, **kwargs, out_val=out)
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
