"""``python -m bench accuracy``: can this world do this task, and was it trained on the prompts?

For each task (a name or a JSON/JSONL file in the seed's schema), on the records the benchmark
would use (tokenized by ``bench.data``, so a dropped record is dropped here too): the model's
pairwise accuracy (clean answer beats the counterfactual answer), its logit difference, the same
with every SAE spliced and the error term dropped, and, on an embedded world built by
``bench train``, how many prompts were seen in training (as a training prompt, or as the start of
a longer training text; ``bench.model.world.provenance``). The built-in tasks' prompts are held out by
construction (``tasks.holdout``), so their count is 0; a user's file has no such guarantee. A file
is named by its file name and content hash only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

N_GENERATED = 400  # records of a generated task, at the world quality table's seed
EVAL_SEED = 12345


def task_accuracy(world, task) -> tuple[dict, set[str]]:
    """One task's row (records used, model and spliced quality) and the keys of
    the prompts it used, read back from the kept token ids (dropped records count nowhere)."""
    from bench.data import tokenize_records
    from bench.model.world.quality import token_quality
    from tasks.base import FileTask

    n = task.n_records if isinstance(task, FileTask) else N_GENERATED
    records = task.records(n, seed=EVAL_SEED)
    source = str(getattr(task, "path", task.name))
    data = tokenize_records(records, world.tokenizer, task.name, task.version, source=source)
    row: dict = {"task": task.name, "records": len(records), "used": len(data)}
    if isinstance(task, FileTask):
        row["file"] = task.path.name
        row["sha256"] = hashlib.sha256(task.path.read_bytes()).hexdigest()[:12]
    full = token_quality(world.spliced.model, data.clean, data.clean_answer, data.patch_answer)
    drop = token_quality(world.spliced.with_policy("drop").run, data.clean, data.clean_answer, data.patch_answer)
    kept = drop["logit_diff"] / full["logit_diff"] if full["logit_diff"] > 0 else float("nan")
    row.update({"model": full, "spliced_drop_error": drop, "logit_diff_kept_fraction": kept})
    row["model_by_case"] = {case: token_quality(world.spliced.model, *(t[idx] for t in (data.clean, data.clean_answer, data.patch_answer)))
                            for case in sorted(set(data.cases))
                            for idx in [torch.tensor([c == case for c in data.cases])]}
    tok = world.tokenizer
    keys = {" ".join(tok.convert_ids_to_tokens(row_ids[1:])) for t in (data.clean, data.patch) for row_ids in t.tolist()}
    row["distinct_prompts"] = len(keys)
    return row, keys


def world_training_stats(world):
    """The ``world.json`` stats of an embedded world whose training streams could be replayed, or the
    reason there are none (a hub model's data is not ours; a random-weights model was never trained).
    Whether the code still replays them exactly is checked on the one replay (``seen_counts``)."""
    if not world.preset.is_embedded or world.preset.model != "embedded":
        return None, f"preset {world.preset.name!r}: not the trained embedded model"
    stats = world.meta.get("world")
    if not stats:
        return None, "world.json: missing"
    return stats, None


def seen_counts(stats: dict, keys: list[set[str]]) -> tuple[list[dict] | None, str | None]:
    """One replay of the world's training streams: per key set, how many were trained on; or None
    and why, when ``world.json`` cannot say what was trained on or the replay is not the recorded
    stream (the counts would then describe another world)."""
    from bench.model.world.provenance import recorded_fingerprints, replay, replay_mismatch, world_config_from_json

    try:  # only reading world.json here: a bug in the replay itself must not pass for a bad file
        cfg = world_config_from_json(stats)
        recorded_fingerprints(stats)
    except ValueError as exc:
        return None, f"training stream not reproducible ({exc})"
    except (KeyError, TypeError, AttributeError) as exc:
        return None, f"training stream not reproducible (world.json: malformed config: {type(exc).__name__}: {exc})"
    r = replay(cfg, set().union(*keys))
    why = replay_mismatch(stats, r.fingerprints)
    if why:
        return None, f"training stream not reproducible ({why})"
    return [r.seen.count(k) for k in keys], None


def format_table(rows: list[dict]) -> str:
    head = f"{'task':<34} {'used':>6} {'acc':>6} {'LD':>6} {'acc drop':>8} {'kept':>6} {'seen in training':>17}"
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['task']:<34} error: {r['error']}")
            continue
        seen = r.get("seen_in_training")
        seen_s = f"{seen['seen_as_training_prefix']}/{seen['prompts']}" if seen else "n/a"
        lines.append(f"{r.get('file', r['task']):<34} {r['used']:>6} {r['model']['pairwise_accuracy']:>6.3f} "
                     f"{r['model']['logit_diff']:>6.2f} {r['spliced_drop_error']['pairwise_accuracy']:>8.3f} "
                     f"{r['logit_diff_kept_fraction']:>6.2f} {seen_s:>17}")
    return "\n".join(lines)


def run_accuracy(preset: str, task_names: tuple[str, ...], out: Path | None, provenance: bool = True) -> list[dict]:
    """Rows for every task; a task that fails becomes a row with its one-line error."""
    from bench.model.loading import load_world
    from bench.run.setup import load_task

    world = load_world(preset)
    stats, why_not = world_training_stats(world) if provenance else (None, "skipped (--no-provenance)")
    rows, keys = [], []
    for name in task_names:
        try:
            row, k = task_accuracy(world, load_task(name))
        except Exception as exc:  # noqa: BLE001 - one task's failure is its row, never the others'
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            row, k = {"task": Path(name).name, "error": msg}, set()
        rows.append(row)
        keys.append(k)
    counts = None
    if stats is not None:
        counts, why_not = seen_counts(stats, keys)
    for row, count in zip(rows, counts or [None] * len(rows)):
        if count is None:
            row["seen_in_training_unavailable"] = why_not
        elif "error" not in row:
            row["seen_in_training"] = count
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"preset": preset, "eval_seed": EVAL_SEED, "n_generated": N_GENERATED, "rows": rows}
        out.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return rows
