"""Shared fixtures: a seconds-long trained world and hand-built toy models with known answers."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import pytest  # noqa: E402
import torch  # noqa: E402

from bench.toys import linear_toy, planted_toy  # noqa: E402


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory):
    """A tiny world trained by the real `bench train` code path (about 5 s)."""
    from bench.model.world.build import WorldConfig, build_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    build_world(WorldConfig.tiny(), out)
    return out


@pytest.fixture(scope="session")
def tiny_world(tiny_world_dir):
    from bench.model.loading import load_world

    return load_world("embedded", world_dir=tiny_world_dir)


@pytest.fixture(scope="session")
def embedded_world():
    """The shipped embedded world (6 MB of safetensors in the repo)."""
    from bench.model.loading import load_world

    return load_world("embedded")


@pytest.fixture()
def linear():
    return linear_toy()


@pytest.fixture()
def planted():
    return planted_toy()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
