"""A real subword tokenizer (BPE, digits split one by one as Gemma's): records that do not fit are
dropped and counted, never fatal, unless too few remain."""

from __future__ import annotations

import logging
import re

import pytest

from bench.data import split_train_test, tokenize_records
from bench.errors import TaskFileError
from tasks import ListIndexError

SOURCE = "list_index.json"


@pytest.fixture(scope="module")
def bpe():
    """A byte-level BPE trained offline on list-indexing prompts, wrapped like bench/model/world/tokenizer.py."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r["clean_prefix"] + r["clean_answer"] for r in ListIndexError().records(200, 1)]
    texts += [">>> data = [4, 7, 5]\n>>> data[10]\n", ">>> nums = [12, 3]\n>>> nums[0]\n12\n"]
    texts += ["Traceback (most recent call last):\nIndexError: list index out of range\n"] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<unk>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    ))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", tok.token_to_id("<bos>"))])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    # It really is a subword tokenizer that splits multi-digit numbers, as Gemma's does.
    assert hf.convert_ids_to_tokens(hf("data[10]", add_special_tokens=False)["input_ids"])[-3:] == ["1", "0", "]"]
    assert len(hf("Traceback", add_special_tokens=False)["input_ids"]) == 1
    return hf


def _index(prompt: str) -> str:
    return re.search(r"\[(\d+)\]\n$", prompt)[1]


def _drops(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "bench.data" and "dropped" in r.getMessage()]


def test_records_that_split_are_dropped_with_one_counted_warning(bpe, caplog):
    recs = ListIndexError().records(120, 0)
    # A hand-made record whose answer (the element 12) is two tokens under digit splitting.
    recs.append({"clean_prefix": ">>> data = [12, 7, 5, 3, 1, 9]\n>>> data[0]\n",
                 "patch_prefix": ">>> data = [12, 7, 5, 3, 1, 9]\n>>> data[9]\n",
                 "clean_answer": "12", "patch_answer": "Traceback", "case": "valid->error"})
    # Independent count, from the strings: an index with a different number of digits than its pair.
    uneven = [i for i, r in enumerate(recs) if len(_index(r["clean_prefix"])) != len(_index(r["patch_prefix"]))]
    assert len(uneven) >= 10 and all({"10", "11"} & {_index(recs[i]["clean_prefix"]), _index(recs[i]["patch_prefix"])} for i in uneven)
    with caplog.at_level(logging.WARNING, logger="bench.data"):
        data = tokenize_records(recs, bpe, "list_indexerror", "1", SOURCE)
    assert _drops(caplog) == [
        f"{SOURCE}: dropped {len(uneven) + 1} of {len(recs)} records: "
        f"{len(uneven)} with clean/patch lengths differing, 1 with a multi-token answer"
    ]
    kept = [r for i, r in enumerate(recs) if i not in uneven and i != len(recs) - 1]
    # Well formed: one length, every prompt and answer is the record's own, in order.
    assert len(data) == len(kept) and data.clean.shape == data.patch.shape == (len(kept), data.n_pos)
    assert data.clean_answer.shape == data.patch_answer.shape == (len(kept),)
    assert data.cases == [r["case"] for r in kept]
    for i, r in enumerate(kept):
        assert data.clean[i, 0] == bpe.bos_token_id
        assert bpe.decode(data.clean[i, 1:]) == r["clean_prefix"]
        assert bpe.decode(data.patch[i, 1:]) == r["patch_prefix"]
        assert bpe.decode([int(data.clean_answer[i])]) == r["clean_answer"]
        assert bpe.decode([int(data.patch_answer[i])]) == r["patch_answer"]
        assert "[10]" not in r["clean_prefix"] + r["patch_prefix"] and "[11]" not in r["clean_prefix"] + r["patch_prefix"]
    assert bool((data.clean != data.patch).any(1).all()) and bool((data.clean_answer != data.patch_answer).all())
    train, test = split_train_test(data, 40, 20, seed=0)
    assert len(train) == 40 and len(test) == 20


def test_nothing_dropped_means_no_warning(bpe, caplog):
    recs = [r for r in ListIndexError().records(60, 0) if len(_index(r["clean_prefix"])) == len(_index(r["patch_prefix"]))]
    with caplog.at_level(logging.WARNING, logger="bench.data"):
        assert len(tokenize_records(recs, bpe, "l", "1", SOURCE)) == len(recs)
    assert _drops(caplog) == []


@pytest.mark.parametrize("n_even", [0, 1])
def test_too_few_records_left_is_one_line_error(bpe, n_even):
    recs = ListIndexError().records(80, 0)
    uneven = [r for r in recs if len(_index(r["clean_prefix"])) != len(_index(r["patch_prefix"]))]
    even = [r for r in recs if r not in uneven][:n_even]
    with pytest.raises(TaskFileError) as e:
        tokenize_records(uneven + even, bpe, "l", "1", SOURCE)
    msg = str(e.value)
    assert msg.startswith(f"{SOURCE}: only {n_even} of {len(uneven) + n_even} records fit the tokenizer")
    assert f"{len(uneven)} with clean/patch lengths differing" in msg and "\n" not in msg


def test_two_records_are_enough(bpe):
    recs = [r for r in ListIndexError().records(40, 0) if len(_index(r["clean_prefix"])) == len(_index(r["patch_prefix"]))]
    assert len(tokenize_records(recs[:2], bpe, "l", "1", SOURCE)) == 2
