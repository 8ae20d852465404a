"""The embedded world's word-level tokenizer, built offline with HF ``tokenizers``.

Words and punctuation runs are tokens, a newline is the visible token ``⏎`` and spaces are dropped,
so every name, digit and verb of the four tasks is one token. It is wrapped as a
``PreTrainedTokenizerFast`` and saved as a directory, because TransformerLens re-opens tokenizers
by their ``name_or_path``; a directory is the offline form of that.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<unk>", "<eos>")
NEWLINE = "⏎"
_PRETOKEN = re.compile(r"\w+|[^\w\s]+")


def pretokenize(text: str) -> list[str]:
    """The same split the tokenizer makes (used to collect the vocabulary)."""
    return _PRETOKEN.findall(text.replace("\n", f" {NEWLINE} "))


def build_tokenizer(texts: Iterable[str], out_dir: str | Path):
    """Build the vocabulary from ``texts``, save the tokenizer to ``out_dir`` and return it."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    words: set[str] = set()
    for t in texts:
        words.update(pretokenize(t))
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Replace("\n", f" {NEWLINE} ")
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tok.decoder = decoders.WordPiece()
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", add_bos_token=True,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hf.save_pretrained(str(out_dir))
    return load_tokenizer(out_dir)


def load_tokenizer(path: str | Path):
    """Load the saved tokenizer directory (no network)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
