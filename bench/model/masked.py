"""The one masked-run path: run the spliced model with some latents kept and the rest replaced.

Every consumer (the evaluator, ``MethodContext.masked_metric``, and through it the methods) runs
"keep these latents, replace the others by the ablation value" through :func:`masked_logit_diff`,
so the edit ``f' = r + m (f - r)`` and the shapes of masks and replacements are handled in one
place:

* a mask per site is ``[pos, d_sae]`` (shared by every prompt), ``[rows, pos, d_sae]`` (one per
  batch row) or ``[d_sae]``; bool masks select exactly (a kept latent is bit-identical to its
  clean value), float masks interpolate (differentiable);
* the replacement per site is ``[pos, d_sae]`` (mean / zero) or ``[n, pos, d_sae]`` (one per
  prompt, counterfactual); :class:`~bench.model.ablation.Replacement` hides which.

``stack_circuits`` evaluates many circuits in one forward: prompts are tiled once per circuit and
each tile gets its own mask, which is far cheaper on small models than one forward per circuit;
the layers below the first site run once per prompt batch (:class:`~bench.model.spliced.Prefix`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from bench.data import TaskData, logit_diff
from bench.model.ablation import Replacement
from bench.model.spliced import Prefix, SplicedModel, mask_edit


def run_masked(
    spliced: SplicedModel, tokens: torch.Tensor | Prefix, masks: Mapping[str, torch.Tensor],
    replacement: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """Logits of the spliced model with ``f' = r + m (f - r)`` at every site in ``masks``.

    The one place that turns masks into latent edits. ``replacement[site]`` is ``[pos, d_sae]``
    or already aligned with the rows of ``tokens`` (``[rows, pos, d_sae]``). ``tokens`` may be a
    :class:`~bench.model.spliced.Prefix` of the same prompts.
    """
    edits = {s: mask_edit(m, replacement[s]) for s, m in masks.items()}
    return spliced.run(tokens, edits)


def group_mask_edit(mask: torch.Tensor, replacement: torch.Tensor, n_groups: int):
    """Edit for a batch made of ``n_groups`` consecutive blocks of rows, block ``j`` masked by ``mask[j]``.

    ``mask`` is ``[L, pos, d_sae]`` or ``[L, d_sae]`` (float: ``r + m (f - r)``; bool: select);
    ``replacement`` is ``[pos, d_sae]`` (shared) or ``[L*B, pos, d_sae]`` (one row per batch row).
    """

    def edit(f: torch.Tensor) -> torch.Tensor:
        fv = f.reshape(n_groups, -1, *f.shape[1:])  # [L, B, pos, d]
        r = replacement.to(f.device, f.dtype)
        rv = r.reshape(n_groups, -1, *r.shape[1:]) if r.dim() == 3 else r
        m = mask.to(f.device)
        m = m[:, None] if m.dim() == 3 else m[:, None, None]
        out = torch.where(m, fv, rv) if m.dtype == torch.bool else rv + m.to(f.dtype) * (fv - rv)
        return out.reshape(f.shape)

    return edit


def run_group_masked(
    spliced: SplicedModel, tokens: torch.Tensor | Prefix, group_masks: Mapping[str, torch.Tensor],
    replacement: Mapping[str, torch.Tensor], n_groups: int,
) -> torch.Tensor:
    """Logits for a batch of ``n_groups`` consecutive blocks of rows, block ``j`` edited with
    ``group_masks[site][j]`` (e.g. one learned mask per lambda, trained together), without
    repeating each mask over its block's rows."""
    edits = {s: group_mask_edit(m, replacement[s], n_groups) for s, m in group_masks.items()}
    return spliced.run(tokens, edits)


def masked_logit_diff(
    spliced: SplicedModel, data: TaskData, masks: Mapping[str, torch.Tensor] | None,
    replacement: Replacement | None, start: int = 0,
) -> torch.Tensor:
    """Per-prompt logit difference ``[n]`` with ``masks`` applied (``None``: nothing edited).

    ``data`` is a slice of the split ``replacement`` was made for, beginning at prompt ``start``
    (only per-prompt replacements need the offset). Gradients flow to float masks.
    """
    if not masks:
        return logit_diff(spliced.run(data.clean), data.clean_answer, data.patch_answer)
    logits = run_masked(spliced, data.clean, masks, replacement.rows(start, start + len(data)))
    return logit_diff(logits, data.clean_answer, data.patch_answer)


@torch.no_grad()
def stacked_logit_diff(
    spliced: SplicedModel, data: TaskData, circuits: Sequence[Mapping[str, torch.Tensor]],
    replacement: Replacement, max_rows: int = 1024,
) -> torch.Tensor:
    """Per-prompt logit difference ``[n_circuits, n]`` for bool circuits ``[pos, d_sae]`` per site.

    Rows are (circuit, prompt) pairs, at most ``max_rows`` per forward; every circuit must give a
    mask for the same sites. The result equals one :func:`masked_logit_diff` per circuit exactly
    (selection is by ``torch.where``; rows never interact in a transformer forward).
    """
    n = len(data)
    out = torch.empty(len(circuits), n)
    if not circuits:
        return out
    prompts_per = min(n, max(1, max_rows))
    for p0 in range(0, n, prompts_per):
        # one prompt batch per call: its tensors are freed before the next batch's (so every batch
        # peaks as the first does, which is what bench.plan.budget simulates)
        _stack_batch(spliced, data.subset(list(range(p0, min(n, p0 + prompts_per)))), circuits,
                     replacement.rows(p0, min(n, p0 + prompts_per)), max_rows, out[:, p0 : p0 + prompts_per])
    return out


def _stack_batch(spliced: SplicedModel, batch: TaskData, circuits: Sequence[Mapping[str, torch.Tensor]],
                 repl: Mapping[str, torch.Tensor], max_rows: int, out: torch.Tensor) -> None:
    """:func:`stacked_logit_diff` on one batch of prompts, into ``out [n_circuits, len(batch)]``."""
    b = len(batch)
    # The layers below the first site, and its encoder, see the same prompts in every circuit's
    # tile: run them once.
    prefix = spliced.prefix(batch.clean, latents=True)
    per = max(1, max_rows // b)
    for c0 in range(0, len(circuits), per):
        chunk = circuits[c0 : c0 + per]
        c = len(chunk)
        masks, rows_repl = {}, {}
        for s in chunk[0]:
            m = torch.stack([ci[s].to(torch.bool) for ci in chunk]).to(spliced.device)  # [c, pos, d]
            masks[s] = m.repeat_interleave(b, dim=0)  # row j: circuit j // b, prompt j % b
            r = repl[s]
            rows_repl[s] = r.repeat(c, 1, 1) if r.dim() == 3 else r
        inputs = prefix.repeat(c) if prefix is not None else batch.clean.repeat(c, 1)
        logits = run_masked(spliced, inputs, masks, rows_repl)
        ld = logit_diff(logits, batch.clean_answer.repeat(c), batch.patch_answer.repeat(c))
        out[c0 : c0 + c] = ld.view(c, b).float().cpu()


def one_node_per_row_edit(rows: torch.Tensor, pos: torch.Tensor, lat: torch.Tensor, value: torch.Tensor):
    """Edit that sets one latent per batch row to its replacement value (no dense mask): exact
    patching ablates a different single node in each row."""

    def edit(f: torch.Tensor) -> torch.Tensor:
        f = f.clone()
        f[rows, pos, lat] = value.to(f.dtype)
        return f

    return edit

