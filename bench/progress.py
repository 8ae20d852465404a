"""The one progress-bar helper: tqdm on a terminal and in a notebook (tqdm.auto draws a widget there),
silent otherwise (CI logs stay readable)."""

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


def in_notebook() -> bool:
    """Running in a Jupyter kernel, where stderr is no terminal but a bar is shown."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")  # a kernel's shell (Jupyter, Colab), not IPython in a terminal


def _shown(enabled: bool) -> bool:
    return enabled and (sys.stderr.isatty() or in_notebook())


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar over ``total`` units (cells) with an ETA, when ``enabled`` and someone can see it
    (a terminal or a notebook)."""
    if not _shown(enabled):
        return _Silent()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=True)


def progress_iter(items, desc: str, enabled: bool = True, total: int | None = None):
    """Wrap an iterable in a tqdm bar when ``enabled`` and someone can see it."""
    if not _shown(enabled):
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, total=total, leave=False)
