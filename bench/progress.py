"""The one progress-bar helper: tqdm on a terminal, silent otherwise (CI logs stay readable)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], desc: str, enabled: bool = True, total: int | None = None) -> Iterable[T]:
    """Wrap ``items`` in a tqdm bar when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)
