"""The seed's task record schema, and loading user task files in it.

A record is ``{"clean_prefix", "patch_prefix", "clean_answer", "patch_answer", "case"}``, all
strings. Structural problems (fields, types, JSON syntax, empty files) are caught here; problems
that need a tokenizer (answers that are not one token, clean/patch lengths that differ) are caught
when the records are tokenized for a model (``bench.data``). Each error names file, record and
problem in one line.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.errors import TaskFileError

FIELDS: tuple[str, ...] = ("clean_prefix", "patch_prefix", "clean_answer", "patch_answer", "case")


def validate_record(record: object, where: str) -> dict[str, str]:
    """Check one record's fields and types; ``where`` is e.g. ``"tasks.jsonl: record 3"``."""
    if not isinstance(record, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise TaskFileError(f"{where}: missing field(s) {', '.join(missing)}")
    extra = sorted(set(record) - set(FIELDS))
    if extra:
        raise TaskFileError(
            f"{where}: unexpected field(s) {', '.join(extra)}; allowed: {', '.join(FIELDS)}"
        )
    for f in FIELDS:
        if not isinstance(record[f], str):
            raise TaskFileError(
                f"{where}: field {f} must be a string, got {type(record[f]).__name__}"
            )
    for f in ("clean_prefix", "patch_prefix", "clean_answer", "patch_answer"):
        if not record[f].strip():
            raise TaskFileError(f"{where}: field {f} is empty")
    return {f: record[f] for f in FIELDS}


def _is_json_lines(text: str) -> bool:
    """One JSON object a line, whatever the file's suffix (the seed's SVA ``.json`` files are so)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or not lines[0].lstrip().startswith("{"):
        return False
    try:
        json.loads(text)
        return False  # one JSON document (e.g. a pretty-printed {"records": [...]})
    except json.JSONDecodeError:
        pass
    try:
        json.loads(lines[0])
        return True
    except json.JSONDecodeError:
        return False


def load_records(path: str | Path) -> list[dict[str, str]]:
    """Read a ``.json`` (a list of records) or ``.jsonl`` (one record a line) task file.

    A ``.json`` file that holds one record a line is read as JSON lines: the seed's SVA files are
    written that way, and they must run unchanged."""
    path = Path(path)
    name = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskFileError(f"{path}: task file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskFileError(f"{path}: cannot read task file ({exc})") from None
    if not text.strip():
        raise TaskFileError(f"{name}: file is empty; expected task records")
    raw: list[object]
    stripped = text.lstrip()
    if path.suffix == ".jsonl" or (path.suffix != ".json" and not stripped.startswith("[")) or _is_json_lines(text):
        raw = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                raw.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TaskFileError(
                    f"{name}: line {lineno}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskFileError(
                f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        if isinstance(data, dict) and "records" in data:
            data = data["records"]
        elif isinstance(data, dict) and set(FIELDS) <= set(data):  # one record (a one-line JSON-lines file)
            data = [data]
        if not isinstance(data, list):
            raise TaskFileError(f"{name}: expected a list of records, got {type(data).__name__}")
        raw = data
    if not raw:
        raise TaskFileError(f"{name}: file holds no records")
    return [validate_record(r, f"{name}: record {i}") for i, r in enumerate(raw)]
