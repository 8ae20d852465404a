"""IOI's templates align names token for token, so a position-wise node means one role."""

from __future__ import annotations


def test_ioi_name_positions_align_across_templates(embedded_world):
    from bench.data import tokenize_records
    from tasks import IndirectObjectIdentification
    from tasks.vocabulary import IOI_NAMES

    task = IndirectObjectIdentification()
    recs = task.records(300, seed=0)
    data = tokenize_records(recs, embedded_world.tokenizer, task.name, task.version, "ioi")
    assert len(data) == len(recs)  # nothing dropped
    name_ids = {embedded_world.tokenizer(" " + n, add_special_tokens=False)["input_ids"][0] for n in IOI_NAMES}
    name_positions = {tuple(p for p, t in enumerate(row.tolist()) if t in name_ids) for row in data.clean}
    assert len(name_positions) == 1, name_positions  # the same three positions in every prompt
    (a, b, s), = name_positions
    # S repeats A or B; IO is the other one
    for row, io, subj in zip(data.clean, data.clean_answer, data.patch_answer):
        assert int(row[s]) == int(subj) and {int(row[a]), int(row[b])} == {int(io), int(subj)}
