"""The results store: one tidy long table, written cell by cell, atomically.

Layout of a results directory::

    cells/<task>__<method>__<key>.parquet   one finished cell (written to a temp file, then renamed)
    results.parquet, results.csv            every cell of the last run, concatenated
    run.json                                config, versions, commit, machine, schema version
    figures/, report.md                     made from the rows only

A cell file exists only if its cell finished, so after a kill at any moment a rerun recomputes
exactly the cells without a file; a half-written temp file is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import UsageError
from bench.version import SCHEMA_VERSION, __version__

log = logging.getLogger(__name__)

# Each column means one thing:
#   circuit        index of the circuit within its cell (-1: a row about the cell, not a circuit)
#   circuit_kind   "native" (built by the method, e.g. one mask per lambda) or "cut" (a ranking cut at k)
#   k              the circuit's realised size in nodes (the same for native and cut circuits)
#   split          "test" / "train" for circuit metrics; "" for rows that belong to no split
#   sample         knockout sample or training step (trace rows); -1 otherwise
#   site/pos/latent  a node (circuit_node rows) or a site (site_nodes rows); pos also labels positions
#   text           a text value (position labels); value holds numbers only
#   per_prompt     per-prompt values behind a mean (test logit differences), for bootstrap intervals;
#                  kept in Parquet only (results.csv leaves it out)
COLUMNS = [
    "schema_version", "code_version", "task", "task_version", "method", "method_version", "params", "model", "preset",
    "sae_ids", "error_policy", "ablation", "split", "seed", "n_train", "n_test", "size_unit",
    "circuit", "circuit_kind", "circuit_params", "k", "metric", "value", "sample", "site", "pos", "latent",
    "text", "per_prompt", "status", "error",
]
DEFAULTS = {"circuit": -1, "circuit_kind": "", "circuit_params": "{}", "k": float("nan"), "sample": -1, "site": "",
            "pos": -1, "latent": -1, "text": "", "status": "ok", "error": "", "split": "", "code_version": ""}


def to_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame([{**DEFAULTS, **r} for r in rows])
    for c in COLUMNS:
        if c not in df:
            df[c] = DEFAULTS.get(c, "")
    if "per_prompt" in df:
        df["per_prompt"] = [list(v) if isinstance(v, (list, tuple, np.ndarray)) else [] for v in df["per_prompt"]]
    df = df[COLUMNS]
    df["value"] = df["value"].astype("float64")
    df["k"] = df["k"].astype("float64")
    for c in ("circuit", "sample", "pos", "latent", "seed", "n_train", "n_test", "schema_version"):
        df[c] = df[c].astype("int64")
    return df


class ResultsDir:
    """A results directory; checks it is writable and of this schema version."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            (self.path / "cells").mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"output directory {self.path} cannot be written ({exc.strerror or exc}); choose another with --out") from None
        run_json = self.path / "run.json"
        if run_json.is_file():
            try:
                found = json.loads(run_json.read_text()).get("schema_version")
            except json.JSONDecodeError:
                raise UsageError(f"{run_json}: not valid JSON; move the directory away or choose another --out") from None
            if found != SCHEMA_VERSION:
                raise UsageError(
                    f"{self.path}: results of schema version {found}, this suite writes {SCHEMA_VERSION}; use a new --out directory"
                )

    def cell_path(self, task: str, method: str, key: str, seed: int = 0) -> Path:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{task}__s{seed}__{method}")
        return self.path / "cells" / f"{safe}__{key}.parquet"

    def has_cell(self, path: Path) -> bool:
        """A cell counts as done only if its checksum sidecar matches its bytes.

        The sidecar is written after the table, so it is the cell's commit marker: a kill between
        the two, a truncated file or a flipped byte all make the cell be recomputed.
        """
        sidecar = path.with_suffix(".sha256")
        if not (path.is_file() and sidecar.is_file()):
            return False
        if hashlib.sha256(path.read_bytes()).hexdigest() != sidecar.read_text().strip():
            log.warning("%s: checksum mismatch, recomputing the cell", path.name)
            path.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            return False
        return True

    def write_cell(self, path: Path, df: pd.DataFrame) -> None:
        path.with_suffix(".sha256").unlink(missing_ok=True)
        write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        write_atomic(path.with_suffix(".sha256"), lambda tmp: Path(tmp).write_text(digest + "\n"))

    def collect(self, paths: list[Path]) -> pd.DataFrame:
        frames = [pd.read_parquet(p) for p in paths if p.is_file()]
        if not frames:
            return to_frame([])
        return pd.concat(frames, ignore_index=True)

    def write_table(self, df: pd.DataFrame) -> None:
        write_atomic(self.path / "results.parquet", lambda tmp: df.to_parquet(tmp, index=False))
        write_atomic(self.path / "results.csv", lambda tmp: df.drop(columns=["per_prompt"]).to_csv(tmp, index=False))

    def write_run_json(self, info: dict) -> None:
        text = json.dumps({"schema_version": SCHEMA_VERSION, **info}, indent=2, sort_keys=True, default=str) + "\n"
        write_atomic(self.path / "run.json", lambda tmp: Path(tmp).write_text(text))


def read_run_json(results: str | Path) -> dict:
    """A results directory's run.json (``{}`` when there is none)."""
    f = Path(results) / "run.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def write_atomic(path: Path, write) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_results(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    f = path / "results.parquet" if path.is_dir() else path
    if not f.is_file():
        raise UsageError(f"{f}: no results table here; run 'python -m bench all --out {path}' first")
    df = pd.read_parquet(f)
    found = set(df["schema_version"].unique()) if "schema_version" in df else {None}
    if found - {SCHEMA_VERSION}:
        raise UsageError(f"{f}: results of schema version {sorted(found, key=str)}, this suite reads {SCHEMA_VERSION}")
    return df


def environment_info() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("torch", "transformer-lens", "sae-lens", "captum", "pandas", "numpy", "matplotlib"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    import torch

    return {
        "bench_version": __version__, "versions": versions, "commit": commit,
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.machine(), "torch_threads": torch.get_num_threads(),
                    "cuda": torch.cuda.is_available()},
    }
