"""Which TopK SAE sizes make the embedded world as lossy as the paper's Gemma Scope SAEs?

The paper's SAEs keep 55–90% of Gemma-2-9B's logit difference with the error term dropped (SVA 90%,
IOI 55%); the shipped embedded SAEs (d_sae 512, k 20) keep ~100%. This trains TopK SAEs of several
sizes at the shipped sites (SAELens trainer, the shipped 3,000 steps and training texts) on the
shipped model and measures the logit difference kept on 200 held-out records per task. One JSON
line per size in ``benchmarks/lossy_sae_trials.jsonl``. About 5 minutes on two cores. (A first pass at
1,500 steps misled: d_sae 128, k 4 kept 90% / 89% / 24% on list / SVA / IOI there, but 101% / 100% / 60%
when trained for 3,000.)

    python benchmarks/lossy_sae_trials.py [--sizes 128x4,256x6] > benchmarks/lossy_sae_trials.jsonl

Each line names the world it was measured on (the first 12 hex digits of the SHA-256 of the
model's training texts, from ``world.json``): trials on an earlier world say nothing about this one.

The lossy variant (bench/model/world/variants.py) uses the size that came closest, trained for the
shipped 3,000 steps; its own numbers are in ``bench/model/world/embedded/variants.json``.
"""

import argparse
import json
import logging
from pathlib import Path

from bench.model.world.artifacts import load_model
from bench.model.world.build import sae_texts, world_quality
from bench.model.world.tokenizer import load_tokenizer
from bench.model.world.train_saes import SAETrainConfig, train_saes

SIZES = [(128, 4), (128, 3), (128, 2), (64, 4), (64, 3), (256, 2)]  # (d_sae, k)

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=None, help="comma list of D_SAExK (default: %s)" % ",".join(f"{d}x{k}" for d, k in SIZES))
    args = ap.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")] if args.sizes else SIZES
    root = Path(__file__).resolve().parents[1] / "bench" / "world" / "embedded"
    world = json.loads((root / "world.json").read_text())["model"].get("texts_sha256", "before-holdout")[:12]
    tok = load_tokenizer(root / "tokenizer")
    model = load_model(root / "model", tok)
    for d, k in sizes:
        cfg = SAETrainConfig(d_sae=d, k=k)  # the shipped 3,000 steps
        saes, st = train_saes(model, tok, sae_texts(cfg), cfg, model_name="embedded")
        q = world_quality(model, saes, tok, 200, 12345)
        print(json.dumps({"world": world, "d": d, "k": k, "fvu": {h: round(s["fvu"], 3) for h, s in st.items()},
                          "kept": {t: round(v["logit_diff_kept_fraction"], 3) for t, v in q.items()}}), flush=True)
