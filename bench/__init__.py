"""SAE-latent circuit discovery benchmark: one spliced model, one task interface, pluggable methods.

From a notebook::

    import bench
    results = bench.evaluate(model, saes, tasks=["sva"], methods=["binary_mask", "attribution_patching"])
    results.verdict()          # the matched-size verdict table
    results.plot("faithfulness_vs_size")
    results.save("my_run")     # a results folder: `python -m bench figures --results my_run` redraws it

``model`` is a TransformerLens ``HookedTransformer`` (or a preset name) and ``saes`` a dict of hook
name -> SAELens ``SAE`` (see :func:`bench.benchmark.evaluate`). The names are imported on first use,
so ``import bench`` stays light.
"""

from bench.version import SCHEMA_VERSION, __version__

__all__ = ["SCHEMA_VERSION", "Results", "__version__", "evaluate"]


def __getattr__(name: str):
    if name in ("evaluate", "Results"):
        from bench import benchmark

        return getattr(benchmark, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
