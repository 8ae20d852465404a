"""Latent labels: the running top-k over batches equals a brute-force top-k over every token."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from bench.run.labels import TOP, compute_labels, label_texts


def test_labels_match_brute_force(tiny_world):
    texts = label_texts(tiny_world)[:150]
    got = compute_labels(tiny_world, texts, batch_size=32)  # five batches: the running top-k must merge them
    # reference: every token's latents at once (right padding; BOS and padding excluded)
    tok, spliced = tiny_world.tokenizer, tiny_world.spliced
    enc = tok(texts, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"].bool()
    mask[:, 0] = False
    lat = spliced.with_policy("keep").latents(ids)  # labels read the true residual (error kept)
    for site in spliced.sites:
        a = lat[site][mask]  # [tokens, d_sae]
        flat = ids[mask]
        for latent in range(0, spliced.d_sae(site), 7):
            row = got[(got.site == site) & (got.latent == latent)].iloc[0]
            col = a[:, latent]
            if (col <= 0).all():
                assert row.label == "(never active)"
                continue
            # batches are padded to their own width, the reference to the longest text: float32 noise only
            assert row.max_activation == pytest.approx(torch.max(col).item(), rel=1e-5, abs=1e-6)
            v, at = col.topk(min(TOP, len(col)))
            words = Counter(tok.convert_ids_to_tokens(int(flat[j])) for j, x in zip(at.tolist(), v.tolist()) if x > 0)
            n_hits = sum(words.values())
            top_count = words.most_common(1)[0][1]
            fired, promoted = row.label.split(" → ")
            word, share = fired.rsplit(" (", 1)
            assert share == f"{top_count}/{n_hits})" and words[word] == top_count  # ties: any most common token
            logit_effect = spliced.saes[site].W_dec[latent] @ spliced.model.W_U
            assert promoted == tok.convert_ids_to_tokens(int(logit_effect.argmax()))
            assert abs(row.active_share - (col > 0).float().mean().item()) < 1e-6
