"""Task generators and the record schema: fields, both directions, fixed lengths, one-line errors."""

from __future__ import annotations

import json

import pytest

from bench.data import split_train_test, tokenize_records
from bench.errors import TaskFileError
from tasks import DictKeyError, IndirectObjectIdentification, ListIndexError, SubjectVerbAgreement
from tasks.schema import FIELDS, load_records

ALL = [DictKeyError, ListIndexError, SubjectVerbAgreement, IndirectObjectIdentification]


@pytest.mark.parametrize("cls", ALL)
def test_records_schema_and_determinism(cls):
    a, b = cls().records(60, seed=3), cls().records(60, seed=3)
    assert a == b and len(a) == 60
    assert all(list(r) == list(FIELDS) for r in a)
    assert len({r["clean_prefix"] for r in a}) == 60
    assert cls().records(60, seed=4) != a


@pytest.mark.parametrize("cls", [DictKeyError, ListIndexError])
def test_code_tasks_store_both_directions(cls):
    recs = cls().records(40, seed=0)
    pairs = {(r["clean_prefix"], r["patch_prefix"]) for r in recs}
    assert sum((p, c) in pairs for c, p in pairs) >= 30  # most pairs appear reversed
    assert {r["case"] for r in recs} == {"valid->error", "error->valid"}
    assert all("Traceback" in (r["clean_answer"], r["patch_answer"]) for r in recs)


def test_dict_patch_queries_a_missing_key():
    for r in DictKeyError().records(30, seed=1):
        if r["case"] == "valid->error":
            query = r["patch_prefix"].split('["')[1].split('"]')[0]
            assert f"'{query}'" not in r["patch_prefix"].split("\n")[0]


def test_ioi_metric_is_io_minus_s():
    for r in IndirectObjectIdentification().records(20, seed=0):
        s = r["patch_answer"].strip()
        assert r["clean_prefix"].count(s) == 2 and r["clean_prefix"].count(r["clean_answer"].strip()) == 1
        assert s not in r["patch_prefix"]


def test_tokenized_tasks_have_one_length_and_single_token_answers(tiny_world):
    for cls in ALL:
        data = tokenize_records(cls().records(50, 0), tiny_world.tokenizer, cls.name, cls.version, cls.name)
        assert len(data) == 50 and data.clean.shape == data.patch.shape


def test_split_keeps_pairs_together(tiny_world):
    data = tokenize_records(DictKeyError().records(80, 0), tiny_world.tokenizer, "d", "1", "d")
    train, test = split_train_test(data, 40, 40, seed=0)
    key = lambda d, i: frozenset([tuple(d.clean[i].tolist()), tuple(d.patch[i].tolist())])  # noqa: E731
    assert not {key(train, i) for i in range(len(train))} & {key(test, i) for i in range(len(test))}


GOOD = {"clean_prefix": "The friends that the dancer visits", "patch_prefix": "The friend that the dancer visits",
        "clean_answer": " go", "patch_answer": " goes", "case": "plural"}

BAD_FILES = [
    ("empty.jsonl", "", "file is empty"),
    ("broken.json", "[{", "not valid JSON"),
    ("broken.jsonl", json.dumps(GOOD) + "\n{oops\n", "line 2: not valid JSON"),
    ("missing.jsonl", json.dumps({k: v for k, v in GOOD.items() if k != "case"}), "record 0: missing field(s) case"),
    ("extra.jsonl", json.dumps({**GOOD, "label": 1}), "record 0: unexpected field(s) label"),
    ("type.jsonl", json.dumps({**GOOD, "clean_answer": 3}), "record 0: field clean_answer must be a string, got int"),
    ("notobj.json", json.dumps([GOOD, 5]), "record 1: expected a JSON object"),
    ("none.json", "[]", "holds no records"),
]


@pytest.mark.parametrize("name,text,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_malformed_task_files_give_one_line_errors(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TaskFileError) as e:
        load_records(path)
    msg = str(e.value)
    assert message in msg and name in msg and "\n" not in msg


BAD_TOKENS = [
    ({**GOOD, "clean_answer": " go home"}, "record 0: clean_answer ' go home' is 2 tokens"),
    ({**GOOD, "patch_answer": " zzzunknown"}, "record 0: patch_answer ' zzzunknown' is not in the model's vocabulary"),
    ({**GOOD, "patch_prefix": "The friend that the dancer visits now"}, "record 0: clean_prefix is 7 tokens but patch_prefix is 8"),
    ({**GOOD, "patch_answer": " go"}, "record 0: clean_answer and patch_answer are the same token"),
]


@pytest.mark.parametrize("record,message", BAD_TOKENS, ids=["multi-token", "unknown", "lengths", "same"])
def test_records_that_need_the_tokenizer(tiny_world, record, message):
    with pytest.raises(TaskFileError) as e:
        tokenize_records([record], tiny_world.tokenizer, "mine", "1", "mine.jsonl")
    assert message in str(e.value) and "mine.jsonl" in str(e.value)


def test_user_file_task_round_trip(tmp_path, tiny_world):
    from tasks.base import FileTask

    recs = SubjectVerbAgreement().records(20, 0)
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs))
    task = FileTask(path)
    assert task.name == "mine" and task.records(100, 0) == recs
    assert task.version.startswith("file-")


UNFIT = [
    ({**GOOD, "clean_answer": " go home"}, "1 with a multi-token answer"),
    ({**GOOD, "patch_answer": " zzzunknown"}, "1 with an answer not in the vocabulary"),
    ({**GOOD, "patch_prefix": "The friend that the dancer visits now"}, "1 with clean/patch lengths differing"),
]


@pytest.mark.parametrize("record,reason", UNFIT, ids=["multi-token", "unknown", "lengths"])
def test_an_unfit_record_among_good_ones_is_dropped_and_counted(tiny_world, caplog, record, reason):
    good = SubjectVerbAgreement().records(12, 0)
    with caplog.at_level("WARNING", logger="bench.data"):
        data = tokenize_records([*good[:5], record, *good[5:]], tiny_world.tokenizer, "mine", "1", "mine.jsonl")
    assert len(data) == 12 and data.cases == [r["case"] for r in good]
    assert [r.getMessage() for r in caplog.records if r.name == "bench.data"] == [f"mine.jsonl: dropped 1 of 13 records: {reason}"]


def test_identical_answers_are_an_error_even_among_good_records(tiny_world):
    good = SubjectVerbAgreement().records(12, 0)
    with pytest.raises(TaskFileError, match="mine.jsonl: record 3: clean_answer and patch_answer are the same token"):
        tokenize_records([*good[:3], {**GOOD, "patch_answer": " go"}, *good[3:]], tiny_world.tokenizer, "mine", "1", "mine.jsonl")


def test_a_task_can_ask_for_more_train_prompts_than_the_run_default():
    # IOI overfits with 128 train prompts (README, "Train vs test"), so it asks for 512; --n-train
    # and --quick mean the user chose, so then every task gets the same size.
    from bench.cli.main import build_parser
    from bench.cli.run import _config

    def cfg(*extra):
        args = build_parser().parse_args(["all", *extra])
        return _config(args, None, None)

    full = cfg()
    assert full.train_size("ioi") == 512 and full.train_size("sva") == full.n_train == 128
    assert cfg("--n-train", "64").train_size("ioi") == 64
    assert cfg("--quick").train_size("ioi") == 64
    # and the split really has that many prompts
    from bench.model.loading import load_world
    from bench.run.setup import load_task, setup_task

    setup = setup_task(load_task("ioi"), load_world("embedded"), full, seed=0)
    assert len(setup.train) == 512 and len(setup.ctx.train) == 512


def test_json_file_holding_one_record_a_line_is_read_as_json_lines(tmp_path):
    # the seed's SVA files (data/sva/*.json) are JSON lines under a .json name; they run unchanged
    recs = [GOOD, {**GOOD, "case": "other"}]
    f = tmp_path / "simple_train.json"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert load_records(f) == recs
    (tmp_path / "list.json").write_text(json.dumps(recs, indent=2))  # a JSON list stays a JSON list
    assert load_records(tmp_path / "list.json") == recs
    (tmp_path / "broken.json").write_text(json.dumps(GOOD) + "\n{oops\n")
    with pytest.raises(TaskFileError, match="broken.json: line 2: not valid JSON"):
        load_records(tmp_path / "broken.json")
