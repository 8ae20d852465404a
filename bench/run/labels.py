"""Latent labels: what each SAE latent responds to, from its top activations over the world's text.

For every latent of every site: the tokens at which it activates most over a fixed sample of text
(the top ``TOP`` token positions), summarised as the most common of those tokens with its share,
one context (the three tokens before the top activation), and the tokens its decoder direction
promotes through the unembedding. The label reads "⏎ (20/20) → Traceback": fires on the newline,
pushes towards ``Traceback``. Computed once per world and run
(``latent_labels.parquet`` in the results directory, keyed by the world's fingerprint) and shown
in the case-study figures, so a reader of a circuit sees a description rather than a bare index. Top-activation labels are the first thing an interpretability researcher checks;
they are a description, not a proof of what a latent does.

Text: for the embedded world, ``N_TEXTS`` samples of its training mixture (``bench.model.world.corpus``,
a fixed seed: the four tasks at varied sizes plus filler). For a hub preset, the run's own task
prompts (clean and patch, every seed's records), the only text this offline suite has for it.
"""

from __future__ import annotations

import bisect
import logging
import random
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

log = logging.getLogger(__name__)

TOP = 20
VERSION = 3  # bump when labels change, so cached label files are recomputed
N_TEXTS = 2000
FILE = "latent_labels.parquet"


def label_texts(world, cfg=None) -> list[str]:
    """The text labels are read from: the embedded world's mixture, else the run ``cfg``'s prompts
    (clean and patch, every task and seed, as many records as the run draws)."""
    if world.preset.is_embedded:
        from bench.model.world.corpus import sample_text

        rng = random.Random("labels:0")
        return [p + (" " + a if a else "") for p, a in (sample_text(rng) for _ in range(N_TEXTS))]
    from bench.run.setup import load_task

    return sorted({r[k] for t in cfg.tasks for sd in cfg.seeds
                   for r in load_task(t).records(2 * (cfg.train_size(t) + cfg.n_test), seed=sd)
                   for k in ("clean_prefix", "patch_prefix")})


@torch.no_grad()
def compute_labels(world, texts: list[str], batch_size: int = 128) -> pd.DataFrame:
    """One row per (site, latent): label, top tokens with counts, a context, max activation, share of
    token positions where it is active."""
    # every SAE reads the model's true residual (error kept): a latent's label should not depend on
    # the run's error policy or on which other SAEs are spliced
    spliced, tok = world.spliced.with_policy("keep"), world.tokenizer
    sites = spliced.sites
    side = getattr(tok, "padding_side", "right")
    tok.padding_side = "right"  # padding after the text: causal attention leaves the real tokens alone
    best_v = {s: None for s in sites}  # [TOP, d_sae] running top activations
    best_i = {s: None for s in sites}  # [TOP, d_sae] their global token indices
    active = {s: torch.zeros(spliced.d_sae(s)) for s in sites}
    all_ids: list[list[int]] = []
    offset, n_tokens = 0, 0
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"].bool()
        if tok.bos_token_id is not None:
            mask[:, 0] &= ids[:, 0] != tok.bos_token_id  # BOS: latents are zeroed there by the spliced model
        cap: dict[str, torch.Tensor] = {}
        spliced.run(ids.to(spliced.device), capture=cap)
        all_ids += ids.tolist()
        flat_mask = mask.reshape(-1)
        gidx = (offset + torch.arange(ids.numel())).reshape(-1)[flat_mask]
        for s in sites:
            a = cap[s].float().cpu().reshape(-1, cap[s].shape[-1])[flat_mask]  # [tokens, d_sae]
            active[s] += (a > 0).sum(0)
            v = torch.cat([a, best_v[s]]) if best_v[s] is not None else a
            ix = torch.cat([gidx[:, None].expand_as(a), best_i[s]]) if best_i[s] is not None else gidx[:, None].expand_as(a)
            k = min(TOP, len(v))
            top_v, top_at = v.topk(k, dim=0)
            best_v[s], best_i[s] = top_v, ix.gather(0, top_at)
        n_tokens += int(flat_mask.sum())
        offset += ids.numel()
    tok.padding_side = side
    promotes = {s: _promoted_tokens(spliced, s, tok) for s in sites}
    flat_ids = [t for r in all_ids for t in r]
    starts = [0]
    for r in all_ids[:-1]:
        starts.append(starts[-1] + len(r))
    rows = []
    for s in sites:
        for latent in range(spliced.d_sae(s)):
            vals, idx = best_v[s][:, latent], best_i[s][:, latent]
            hits = [int(j) for v, j in zip(vals.tolist(), idx.tolist()) if v > 0]
            if not hits:
                rows.append({"site": s, "latent": latent, "label": "(never active)", "promotes": ", ".join(promotes[s][latent]),
                             "top_tokens": "", "context": "",
                             "max_activation": 0.0, "active_share": 0.0})
                continue
            words = Counter(tok.convert_ids_to_tokens(flat_ids[j]) for j in hits)
            (word, n), = words.most_common(1)
            j = hits[0]
            row_start = starts[bisect.bisect_right(starts, j) - 1]
            ctx = tok.convert_ids_to_tokens(flat_ids[max(row_start + 1, j - 3): j + 1])
            rows.append({"site": s, "latent": latent, "label": f"{word} ({n}/{len(hits)}) → {promotes[s][latent][0]}",
                         "promotes": ", ".join(promotes[s][latent]),
                         "top_tokens": ", ".join(f"{w}×{c}" for w, c in words.most_common(5)),
                         "context": " ".join(ctx[:-1] + [f"[{ctx[-1]}]"]),
                         "max_activation": float(vals[0]), "active_share": float(active[s][latent] / max(1, n_tokens))})
    return pd.DataFrame(rows)


@torch.no_grad()
def _promoted_tokens(spliced, site: str, tok, top: int = 3, chunk: int = 1024) -> list[list[str]]:
    """Per latent, the tokens its decoder direction raises most when read straight through the
    unembedding (``W_dec @ W_U``; the final norm and later layers are ignored: a first-order label)."""
    w_dec, w_u = spliced.saes[site].W_dec.float(), spliced.model.W_U.float()
    out: list[list[str]] = []
    for i in range(0, len(w_dec), chunk):
        ids = (w_dec[i : i + chunk] @ w_u).topk(top, dim=-1).indices.cpu().tolist()
        out += [tok.convert_ids_to_tokens(r) for r in ids]
    return out


def write_labels(world, results: str | Path, cfg) -> Path:
    """``latent_labels.parquet`` for ``world`` in ``results`` (kept when its fingerprint matches)."""
    path = Path(results) / FILE
    if path.is_file():
        old = pd.read_parquet(path)
        if len(old) and "labels_version" in old and (old.world_fingerprint == world.fingerprint).all() \
                and (old.labels_version == VERSION).all():
            return path
    df = compute_labels(world, label_texts(world, cfg))
    df["world_fingerprint"] = world.fingerprint
    df["labels_version"] = VERSION
    tmp = path.with_suffix(".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    log.info("latent labels: %s (%d latents)", path, len(df))
    return path


def load_labels(results: str | Path) -> pd.DataFrame | None:
    path = Path(results) / FILE
    return pd.read_parquet(path) if path.is_file() else None
