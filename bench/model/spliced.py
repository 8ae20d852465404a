"""The SAE-spliced model: a TransformerLens model with SAELens SAEs substituted at residual hooks.

This is the only module that touches TransformerLens hooks and SAELens internals; methods and the
evaluator speak in latents ``[batch, pos, d_sae]`` per site and never see a hook.

At each site ``blocks.L.hook_resid_pre`` or ``blocks.L.hook_resid_post`` (in forward order) the
residual ``x`` is replaced by
``decode(edit(encode(x))) + error``, so each downstream SAE encodes the already-substituted
residual, as in the paper. The error term follows the policy:

* ``drop`` (the paper's published runs): no error, the residual is the SAE reconstruction;
* ``keep``: the true error ``x - decode(encode(x))`` of the current input, so with no edit the
  spliced model equals the plain model (to float rounding);
* ``mean``: a fixed per-position mean error, fitted on reference prompts (``fit_error_means``).

BOS (position 0) is handled as the paper does: its latents read as zero and its residual is passed
through unchanged. We use plain TransformerLens hooks rather than ``HookedSAETransformer.add_sae``
because the latter has no mean-error policy, no BOS pass-through and no soft-mask edits; the SAEs
themselves are SAELens ``SAE`` objects used through ``encode``/``decode``.

Hooks are installed by ``HookedTransformer.hooks`` inside a context manager and removed in its
``finally``, so a run that raises leaves no hook behind.

Every metric reads the last position's logits only, so ``run``/``run_from``/``run_plain`` run the
blocks to the end and apply TransformerLens's head (``ln_final``, ``unembed``, output soft-cap) to
the last position only: they return ``[batch, 1, d_vocab]`` (``logits[:, -1]`` still works). At a
256k vocabulary the full ``[batch, pos, d_vocab]`` logits would be the dominant memory. For the
same reason a site at the final residual (the last block's ``hook_resid_post``, as in the embedded
world) is substituted at the last position only in those runs, unless its latents are captured:
its encoder and decoder then run on one position instead of all (an evaluation forward on the
embedded world's dict prompts, 36 positions, takes 0.8 to 0.9 of the time; ``tests/test_spliced.py`` checks
the logits and gradients). With ``all_position_logits`` set (the planner's all-positions logits,
``bench.plan.estimate.logits_mode``) the head reads every position, and every one is substituted.
Likewise the last block itself runs at the last position only in those runs (its keys and values
from every position, through TransformerLens's key-value cache path: :mod:`bench.model.last_block`),
where its architecture allows it and no site sits inside it; logits and gradients equal the full
forward's to float rounding (``tests/test_architectures.py``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

from bench.model import last_block

ERROR_POLICIES: tuple[str, ...] = ("drop", "keep", "mean")

# An edit maps the latents at one site [batch, pos, d_sae] to edited latents of the same shape. It
# must act on each position separately and keep no reference to its input: at a final-residual
# site a run substitutes the last position only, and the edit then sees zeros before it.
Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Prefix:
    """The residual entering the first site's SAE, ``[batch, pos, d_model]``, for some prompts.

    No edit can act below the first site, so every spliced run over the same prompts computes the
    same prefix. Runs that repeat prompts (the evaluator stacks many circuits per batch, the mask
    trains for many steps on the same train prompts, IG interpolates ``n_steps`` times) compute it
    once and pass it to :meth:`SplicedModel.run` instead of tokens.
    """

    resid: torch.Tensor
    # Optional: the first site's unedited latents ``[batch, pos, d_sae]`` (its SAE's encoding of
    # ``resid``, BOS zeroed), so tiled runs skip that encoder too. Costs ``d_sae / d_model`` times
    # the memory of ``resid``: the evaluator keeps it for one prompt batch at a time.
    latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.resid)

    def repeat(self, c: int) -> Prefix:
        """The prompts tiled ``c`` times along the batch (like ``tokens.repeat(c, 1)``)."""
        lat = None if self.latents is None else self.latents.repeat(c, 1, 1)
        return Prefix(self.resid.repeat(c, 1, 1), lat)

    def index(self, idx: torch.Tensor) -> Prefix:
        idx = idx.to(self.resid.device)
        return Prefix(self.resid[idx], None if self.latents is None else self.latents[idx])


@dataclass
class PassCounter:
    """Counts model forward/backward passes for the cost metrics.

    ``*_calls`` counts calls and ``*_prompts`` prompt-passes, whatever part of the model they run.
    ``*_model_fraction`` counts prompt-passes weighted by the fraction of the transformer blocks
    they run: a full run adds ``n`` for ``n`` prompts, a ``run_from`` that starts at block ``S`` of
    ``n_layers`` adds ``n * (n_layers - S) / n_layers`` (embedding and unembedding not weighed).
    """

    forward_calls: int = 0
    forward_prompts: int = 0
    backward_calls: int = 0
    backward_prompts: int = 0
    forward_model_fraction: float = 0.0
    backward_model_fraction: float = 0.0

    def snapshot(self) -> dict[str, float]:
        return dict(self.__dict__)

    def since(self, before: Mapping[str, float]) -> dict[str, float]:
        return {k: v - before.get(k, 0) for k, v in self.__dict__.items()}


def mask_edit(mask: torch.Tensor, replacement: torch.Tensor) -> Edit:
    """``f' = r + m * (f - r)``: ``m = 1`` keeps a latent, ``m = 0`` replaces it by ``r``.

    ``mask`` broadcasts against ``[batch, pos, d_sae]``: ``[pos, d_sae]`` (position-wise, shared
    by the batch), ``[batch, pos, d_sae]`` (per prompt) or ``[d_sae]`` (per latent). The
    ``replacement`` is ``[pos, d_sae]`` (mean) or ``[batch, pos, d_sae]`` (counterfactual).
    A bool mask selects with ``torch.where`` (exact); a float mask interpolates (differentiable).
    """

    def edit(f: torch.Tensor) -> torch.Tensor:
        r = replacement.to(f.device, f.dtype)
        if mask.dtype == torch.bool:
            # Binary circuits select exactly: a kept latent is bit-identical to the clean value.
            return torch.where(mask.to(f.device), f, r)
        return r + mask.to(f.device, f.dtype) * (f - r)

    return edit


@dataclass
class SplicedModel:
    """A frozen HookedTransformer plus SAEs at residual hooks, with an error-term policy.

    ``saes`` maps hook name -> SAELens ``SAE``; it is kept in forward order (``_site_key``).
    """

    model: object
    saes: dict[str, object]
    error_policy: str = "drop"
    bos_passthrough: bool = True
    error_means: dict[str, torch.Tensor] = field(default_factory=dict)
    counter: PassCounter = field(default_factory=PassCounter)
    # The planner prices logits at every position (bench.plan.estimate.logits_mode): the head then
    # reads every position, so no site is substituted at the last position alone.
    all_position_logits: bool = False

    def __post_init__(self) -> None:
        from bench.errors import InputError

        if self.error_policy not in ERROR_POLICIES:
            raise InputError(
                f"error policy {self.error_policy!r} is not one of {', '.join(ERROR_POLICIES)}"
            )
        hook_dict = self.model.hook_dict
        for hook, sae in self.saes.items():
            if hook not in hook_dict:
                raise InputError(f"SAE hook {hook!r} does not exist in model {self.model.cfg.model_name!r}")
            d_model = self.model.cfg.d_model
            if sae.cfg.d_in != d_model:
                raise InputError(
                    f"SAE at {hook!r} has d_in={sae.cfg.d_in} but the model's residual width is {d_model}"
                )
        self.saes = dict(sorted(self.saes.items(), key=lambda kv: _site_key(kv[0])))
        for module in [self.model, *self.saes.values()]:
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    # ----- structure -------------------------------------------------------------------------
    @property
    def sites(self) -> list[str]:
        return list(self.saes)

    def d_sae(self, site: str) -> int:
        return self.saes[site].cfg.d_sae

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def with_policy(self, error_policy: str) -> SplicedModel:
        """The same model and SAEs under another error policy (shares weights and counters)."""
        return SplicedModel(self.model, self.saes, error_policy, self.bos_passthrough, dict(self.error_means), self.counter)

    def with_sites(self, sites) -> SplicedModel:
        """The same model with only the SAEs at ``sites`` spliced (an SAE-placement setting)."""
        keep = set(sites)
        return self._subset(lambda s: s in keep)

    # ----- running ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def spliced(
        self, edits: Mapping[str, Edit] | None = None, capture: dict[str, torch.Tensor] | None = None,
        error_means: Mapping[str, torch.Tensor] | None = None, last_only: bool = False,
        positions: int | None = None,
    ) -> Iterator[None]:
        """Install the SAE hooks for the duration of the block; removed even if it raises.

        ``capture``, if given, is filled with each site's (edited) latents ``[batch, pos, d_sae]``.
        ``last_only``: the caller reads the final residual at the last position only (the runs
        below), so a site there substitutes that position alone (:meth:`substitute`).
        ``positions``: the prompts' length when the last block runs at the last position only
        (:mod:`bench.model.last_block`), so a final site's hook sees one of them.
        """
        edits = dict(edits or {})
        unknown = set(edits) - set(self.saes)
        if unknown:
            raise KeyError(f"edits for unknown sites: {sorted(unknown)}")
        means = self.error_means if error_means is None else error_means
        if self.error_policy == "mean" and any(s not in means for s in self.saes) and error_means is None:
            raise RuntimeError("error policy 'mean' needs fit_error_means(...) first")

        def make_hook(site: str) -> Callable:
            last = last_only and self.is_final(site)

            def hook_fn(x: torch.Tensor, hook) -> torch.Tensor:
                return self.substitute(site, x, edits.get(site), capture, means, last_only=last,
                                       positions=positions if last else None)

            return hook_fn

        hooks = [(site, make_hook(site)) for site in self.saes]
        with self.model.hooks(fwd_hooks=hooks):
            yield

    def substitute(
        self, site: str, x: torch.Tensor, edit: Edit | None = None,
        capture: dict[str, torch.Tensor] | None = None, means: Mapping[str, torch.Tensor] | None = None,
        latents: torch.Tensor | None = None, last_only: bool = False, positions: int | None = None,
    ) -> torch.Tensor:
        """The residual that replaces ``x [batch, pos, d_model]`` at ``site`` (see module doc).

        ``latents``: ``encode`` of ``x`` computed earlier (BOS already zeroed), to skip the encoder.
        ``last_only``: return the last position's residual alone, ``[batch, 1, d_model]``, for a
        site whose output only the head reads (:meth:`is_final`); nothing is captured then.
        ``positions``: with ``last_only``, the prompts' length when ``x`` holds their last position
        only (the last block ran there alone).
        """
        if positions is not None and capture is not None:
            raise ValueError("substitute: a capture needs every position, not the last of positions")
        sae = self.saes[site]
        means = self.error_means if means is None else means
        n = positions or x.shape[1]
        if last_only and capture is None and n > 1:
            return self._substitute_last(site, x[:, -1:], n, edit, means, latents)
        f = self.encode(site, x) if latents is None else latents.to(x.device, x.dtype)
        f_edit = edit(f) if edit is not None else f
        if capture is not None:
            capture[site] = f_edit
        out = sae.decode(f_edit)
        if self.error_policy == "keep":
            out = out + (x - sae.decode(f))
        elif self.error_policy == "mean" and site in means:
            out = out + means[site][: x.shape[1]].to(out.dtype)
        if self.bos_passthrough:
            out = torch.cat([x[:, :1], out[:, 1:]], dim=1)
        return out

    def _substitute_last(self, site: str, x_last: torch.Tensor, n: int, edit: Edit | None,
                         means: Mapping[str, torch.Tensor], latents: torch.Tensor | None) -> torch.Tensor:
        """:meth:`substitute` at the last position of ``n`` only, ``x_last [batch, 1, d_model]``:
        the encoder and decoder run on one position (a site at the final residual, where the rest
        is never read). The edit still sees latents of the full shape ``[batch, n, d_sae]`` (zeros
        before the last position), so masks and patches index positions as everywhere else; every
        edit in the suite acts position by position, so its last position is what the full
        substitution computes. The SAE acts on each row and position separately, so this equals
        ``substitute(...)[:, -1:]`` (``tests/test_spliced.py`` compares them)."""
        sae = self.saes[site]
        f_last = sae.encode(x_last) if latents is None else latents[:, -1:].to(x_last.device, x_last.dtype)
        f_edit = f_last
        if edit is not None:
            pad = f_last.new_zeros(f_last.shape[0], n - 1, f_last.shape[2])
            f_edit = edit(torch.cat([pad, f_last], dim=1))[:, -1:]
        out = sae.decode(f_edit)
        if self.error_policy == "keep":
            out = out + (x_last - sae.decode(f_last))
        elif self.error_policy == "mean" and site in means:
            if len(means[site]) < n:
                raise ValueError(f"{site}: error means fitted on {len(means[site])} positions, prompts have {n}")
            out = out + means[site][n - 1 : n].to(out.dtype)
        return out

    def is_final(self, site: str) -> bool:
        """Whether ``site`` is the final residual (the last block's ``hook_resid_post``): after it,
        only the head reads the residual, at the last position."""
        return site == f"blocks.{self.model.cfg.n_layers - 1}.hook_resid_post"

    def encode(self, site: str, x: torch.Tensor) -> torch.Tensor:
        """The site's SAE latents of residual ``x``, with BOS read as zero (see module doc)."""
        f = self.saes[site].encode(x)
        if self.bos_passthrough:
            f = torch.cat([torch.zeros_like(f[:, :1]), f[:, 1:]], dim=1)
        return f

    def run_from(self, site: str, x: torch.Tensor, edits: Mapping[str, Edit] | None = None,
                 capture: dict[str, torch.Tensor] | None = None, fraction: float | None = None,
                 latents: torch.Tensor | None = None) -> torch.Tensor:
        """Last-position logits ``[batch, 1, d_vocab]`` when the residual entering ``site``'s SAE is ``x``.

        The layers before the site are skipped: the remainder starts at block ``L`` for
        ``blocks.L.hook_resid_pre`` and at block ``L + 1`` for ``blocks.L.hook_resid_post``; the
        SAEs spliced downstream are those strictly after ``site`` in forward order. ``edits`` may
        hold ``site`` and downstream sites. Used by exact patching, where only the site's latents
        change and re-running the layers below would recompute the same residual. ``fraction``
        overrides the share of the model the pass is counted as (see :meth:`run`).
        """
        edits = dict(edits or {})
        if site not in self.saes:
            raise KeyError(f"run_from: {site!r} is not a site of this model")
        start = start_block(site)
        key = _site_key(site)
        upstream = sorted(s for s in edits if s in self.saes and _site_key(s) < key)
        if upstream:
            raise ValueError(f"run_from({site!r}): edits for upstream sites {upstream} cannot apply")
        if self.error_policy == "mean" and site not in self.error_means:
            raise RuntimeError("error policy 'mean' needs fit_error_means(...) first")
        last = not self.all_position_logits
        out = self.substitute(site, x.to(self.device), edits.pop(site, None), capture, latents=latents,
                              last_only=last and self.is_final(site))
        after = self._subset(lambda s: _site_key(s) > key)
        n_layers = self.model.cfg.n_layers
        short = last and capture is None and start < n_layers and after._last_block_alone()
        with after.spliced(edits, capture, last_only=last, positions=x.shape[1] if short else None):
            if not short:
                resid = self.model(out, start_at_layer=start, stop_at_layer=n_layers)
            else:  # the last block at the last position only (bench.model.last_block)
                if start < n_layers - 1:
                    out = self.model(out, start_at_layer=start, stop_at_layer=n_layers - 1)
                resid = last_block.last_position(self.model.blocks[n_layers - 1], out)
        logits = self._head(resid)
        self._count(logits, len(x), (n_layers - start) / n_layers if fraction is None else fraction)
        return logits

    def _last_block_alone(self) -> bool:
        """Whether the last block may run at the last position only: its architecture allows it
        (:func:`bench.model.last_block.unsupported`) and no site of this model sits inside it
        (a site at its ``hook_resid_post``, the final residual, is substituted there alone), and no
        hook is attached inside it before the run installs its own."""
        n = self.model.cfg.n_layers
        inside = [s for s in self.saes if _site_key(s) >= (n - 1, 0) and not self.is_final(s)]
        return (not inside and last_block.unsupported(self.model.cfg) is None
                and not last_block.busy_hooks(self.model.blocks[n - 1]))

    def _prefix_start(self) -> int | None:
        """The block a run resumes at after the first site, or None when the first site is not a
        residual hook (or there is none): then runs start from the tokens."""
        if not self.saes or _RESID.fullmatch(self.sites[0]) is None:
            return None
        # TL's forward from ``start_at_layer`` takes no shortformer positional embedding (or
        # attention mask): such models run every block from the tokens.
        if getattr(self.model.cfg, "positional_embedding_type", "") == "shortformer":
            return None
        return start_block(self.sites[0])

    @torch.no_grad()
    def prefix(self, tokens: torch.Tensor, count: bool = True, latents: bool = False) -> Prefix | None:
        """The residual entering the first site for ``tokens`` (None if the sites do not allow it),
        with the first site's latents if ``latents``.

        Counted as a forward through the blocks below the first site.
        """
        start = self._prefix_start()
        if start is None:
            return None
        resid = self.model(tokens.to(self.device), stop_at_layer=start)
        f = self.encode(self.sites[0], resid) if latents else None
        if count:
            self.counter.forward_calls += 1
            self.counter.forward_prompts += len(tokens)
            self.counter.forward_model_fraction += len(tokens) * start / self.model.cfg.n_layers
        return Prefix(resid, f)

    @torch.no_grad()
    def site_inputs(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """The residual entering each site's SAE on an unedited spliced run ``[batch, pos, d_model]``."""
        store: dict[str, torch.Tensor] = {}

        def grab(x: torch.Tensor, hook) -> torch.Tensor:
            store[hook.name] = x.detach().clone()
            return x

        # TL runs hooks on one point in the order they were added: grab first, then substitute.
        # Blocks only (no unembedding): nothing after the last block is needed.
        with self.model.hooks(fwd_hooks=[(s, grab) for s in self.saes]), self.spliced():
            self.model(tokens.to(self.device), stop_at_layer=self.model.cfg.n_layers)
        return store

    def run(
        self, tokens: torch.Tensor | Prefix, edits: Mapping[str, Edit] | None = None,
        capture: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Last-position logits ``[batch, 1, d_vocab]`` of the spliced model with optional latent edits.

        ``tokens`` may be a :class:`Prefix` computed earlier for the same prompts; the run then
        starts at the first site and is counted as the share of the model it runs. From tokens,
        the prefix and the rest run back to back and count as one full pass.
        """
        if isinstance(tokens, Prefix):
            return self.run_from(self.sites[0], tokens.resid, edits, capture, latents=tokens.latents)
        if self._prefix_start() is not None:
            return self.run_from(self.sites[0], self.prefix(tokens, count=False).resid, edits, capture, fraction=1.0)
        tokens = tokens.to(self.device)
        with self.spliced(edits, capture, last_only=not self.all_position_logits):
            resid = self.model(tokens, stop_at_layer=self.model.cfg.n_layers)
        logits = self._head(resid)
        self._count(logits, len(tokens))
        return logits

    def run_plain(self, tokens: torch.Tensor) -> torch.Tensor:
        """Last-position logits ``[batch, 1, d_vocab]`` of the model without any SAE (the 'full model' M)."""
        resid = self.model(tokens.to(self.device), stop_at_layer=self.model.cfg.n_layers)
        logits = self._head(resid)
        self._count(logits, len(tokens))
        return logits

    def _head(self, resid: torch.Tensor) -> torch.Tensor:
        """``HookedTransformer.forward`` after the blocks (TL 3.9), on the last position only (on
        every position with ``all_position_logits``, the planner's comparison).

        TL applies ``ln_final`` when ``normalization_type`` is set, then ``unembed``, then the
        output soft-cap ``cap * tanh(logits / cap)`` when ``output_logits_soft_cap > 0``. All three
        act on each position separately, so slicing the last position first changes nothing.
        """
        model = self.model
        if not self.all_position_logits:
            resid = resid[:, -1:]
        if model.cfg.normalization_type is not None:
            resid = model.ln_final(resid)
        logits = model.unembed(resid)
        cap = model.cfg.output_logits_soft_cap
        if cap is not None and cap > 0:
            logits = cap * torch.tanh(logits / cap)
        return logits

    @torch.no_grad()
    def latents(self, tokens: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """Each site's latents ``[batch, pos, d_sae]`` on an unedited spliced run."""
        parts: dict[str, list[torch.Tensor]] = {s: [] for s in self.saes}
        for i in range(0, len(tokens), batch_size):
            cap: dict[str, torch.Tensor] = {}
            self.run(tokens[i : i + batch_size], capture=cap)
            for s in self.saes:
                parts[s].append(cap[s])
        return {s: torch.cat(v) for s, v in parts.items()}

    @torch.no_grad()
    def fit_error_means(self, tokens: torch.Tensor) -> None:
        """Fit the per-position mean error ``[pos, d_model]`` used by the ``mean`` policy.

        Sites are fitted in layer order, each under the means already fitted upstream, so the
        means describe the errors the spliced model actually meets.
        """
        means: dict[str, torch.Tensor] = {}
        tokens = tokens.to(self.device)
        for site, sae in self.saes.items():
            store: dict[str, torch.Tensor] = {}

            def grab(x: torch.Tensor, hook, sae=sae, store=store) -> torch.Tensor:
                store["err"] = (x - sae.decode(sae.encode(x))).mean(0)
                return x

            # Only the upstream sites are spliced while reading this site's input.
            upstream = self._subset(lambda s, site=site: _site_key(s) < _site_key(site), policy="mean", means=means)
            with upstream.spliced(error_means=means), self.model.hooks(fwd_hooks=[(site, grab)]):
                self.model(tokens, stop_at_layer=self.model.cfg.n_layers)
            means[site] = store["err"]
        self.error_means = means

    def _subset(self, keep: Callable[[str], bool], policy: str | None = None,
                means: Mapping[str, torch.Tensor] | None = None) -> SplicedModel:
        """The same model with only the sites ``keep`` accepts (shares weights and counters)."""
        return SplicedModel(self.model, {s: a for s, a in self.saes.items() if keep(s)}, policy or self.error_policy,
                            self.bos_passthrough, dict(self.error_means if means is None else means), self.counter)

    def _count(self, logits: torch.Tensor, n: int, fraction: float = 1.0) -> None:
        """Count a forward of ``n`` prompts through ``fraction`` of the blocks (and its backward)."""
        self.counter.forward_calls += 1
        self.counter.forward_prompts += n
        self.counter.forward_model_fraction += n * fraction
        if logits.requires_grad:
            def on_backward(grad: torch.Tensor) -> torch.Tensor:
                self.counter.backward_calls += 1
                self.counter.backward_prompts += n
                self.counter.backward_model_fraction += n * fraction
                return grad

            logits.register_hook(on_backward)

    def hook_count(self) -> int:
        """Number of forward/backward hooks currently attached (0 outside ``spliced``)."""
        return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in self.model.hook_dict.values())


_RESID = re.compile(r"blocks\.(\d+)\.hook_resid_(pre|post)")


def start_block(site: str) -> int:
    """The block a forward pass resumes at after ``site``: ``L`` for resid_pre, ``L + 1`` for resid_post."""
    from bench.errors import InputError

    m = _RESID.fullmatch(site)
    if m is None:
        raise InputError(
            f"cannot run the model from hook {site!r}: only blocks.L.hook_resid_pre and blocks.L.hook_resid_post sites are supported"
        )
    return int(m[1]) + (m[2] == "post")


def _site_key(hook: str) -> tuple[int, int]:
    """Forward-order sort key: ``(L, 0)`` for resid_pre, ``(L, 2)`` for resid_post of block ``L``.

    ``blocks.L+1.hook_resid_pre`` and ``blocks.L.hook_resid_post`` hold the same residual; the
    latter fires first. Other hooks inside block ``L`` sort between its pre and post, embedding
    hooks (``hook_embed`` ...) before every block and anything else (``ln_final``) after them.
    """
    m = _RESID.fullmatch(hook)
    if m is not None:
        return int(m[1]), 0 if m[2] == "pre" else 2
    parts = hook.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return int(parts[1]), 1
    if parts[0].startswith("hook_"):
        return -1, 0
    return 1 << 30, 0
