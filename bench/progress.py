"""The one progress-bar helper: tqdm on a terminal, silent otherwise (CI logs stay readable)."""

from __future__ import annotations

import sys


class _Silent:
    """The bar's interface, doing nothing (no terminal, or progress switched off)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar over ``total`` units (cells) with an ETA, when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=True)


def progress_iter(items, desc: str, enabled: bool = True, total: int | None = None):
    """Wrap an iterable in a tqdm bar when ``enabled`` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)
