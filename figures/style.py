"""Shared look of every figure, and byte-stable saving (same rows -> same files)."""

from __future__ import annotations

from pathlib import Path

METHOD_ORDER = ("binary_mask", "attribution_patching", "integrated_gradients", "activation_patching",
                "activation_magnitude", "random")
COLORS = {
    "binary_mask": "#d62728",
    "attribution_patching": "#1f77b4",
    "integrated_gradients": "#2ca02c",
    "activation_patching": "#9467bd",
    "activation_magnitude": "#8c564b",
    "random": "#7f7f7f",
}
EXTRA_COLORS = ("#ff7f0e", "#e377c2", "#bcbd22", "#17becf", "#aec7e8", "#98df8a")
LABELS = {
    "binary_mask": "binary mask (learned)",
    "attribution_patching": "attribution patching",
    "integrated_gradients": "integrated gradients",
    "activation_patching": "activation patching (exact noising, capped prompts)",
    "activation_magnitude": "activation magnitude (baseline)",
    "random": "random ranking (baseline)",
}

# Short names, for figures where the rival is a row label; and the order rivals are shown in.
SHORT = {"binary_mask": "mask", "attribution_patching": "AtP", "integrated_gradients": "IG",
         "activation_patching": "exact patching", "activation_magnitude": "magnitude", "random": "random"}
RIVAL_ORDER = ("integrated_gradients", "attribution_patching", "activation_patching", "activation_magnitude", "random")
# The verdict figure's colours are the outcome, not the method.
VERDICT_COLORS = {"beats": "#1a9641", "tied": "#8c8c8c", "loses": "#d7191c", "saturated": "#8c8c8c", "n/a": "#cccccc"}


def short(method: str) -> str:
    return SHORT.get(method, method)


def setup() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 130, "font.size": 9, "axes.titlesize": 10,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "legend.fontsize": 8, "legend.frameon": False, "svg.hashsalt": "bench", "pdf.compression": 6,
    })


def methods_in(df) -> list[str]:
    present = [m for m in df["method"].unique() if not m.startswith("(")]
    return [m for m in METHOD_ORDER if m in present] + sorted(m for m in present if m not in METHOD_ORDER)


def color(method: str, methods: list[str]) -> str:
    if method in COLORS:
        return COLORS[method]
    extras = [m for m in methods if m not in COLORS]
    return EXTRA_COLORS[extras.index(method) % len(EXTRA_COLORS)]


def label(method: str) -> str:
    return LABELS.get(method, method)


# The formats ``save`` writes; ``figures.registry.render_all(formats=...)`` sets them for one rendering.
FORMATS: tuple[str, ...] = ("png", "pdf")
_META = {"png": {"Software": None}, "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}


def save(fig, out_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` (the formats in :data:`FORMATS`) with no timestamps, so
    reruns are byte-identical."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{fmt}" for fmt in FORMATS]
    for path, fmt in zip(paths, FORMATS):
        fig.savefig(path, metadata=_META[fmt], bbox_inches="tight")
    plt.close(fig)
    return paths


def task_grid(tasks: list[str], width: float = 4.2, height: float = 3.2):
    import matplotlib.pyplot as plt

    n = len(tasks)
    cols = min(2, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = axes.flatten()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, dict(zip(tasks, flat))
