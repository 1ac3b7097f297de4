"""Fixtures of the training tests: a synthetic COCO set, one tiny trained teacher shared by eval/predict tests, and
DDP runs in gloo processes.

Torch runs single-threaded here: the CI machine has 2 cores, and OpenMP threads that compete with other processes
make a step 30x slower.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

from steadyseg.datasets.synthetic import make_synthetic_coco

# a 4-step deeplabv3_mobilenet_v3_large (width 0.25, aux head and dropout on) at 32 px: seconds on a CPU
TINY = dict(labels="file", architecture="deeplabv3_mobilenet_v3_large", width_mult=0.25, epochs=4 / 3,
            base_size=32, crop_size=32, batch_size=2, seed=3, progress=False)


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def synthetic_coco(tmp_path_factory):
    return make_synthetic_coco(tmp_path_factory.mktemp("syncoco"), num_images=6)


@pytest.fixture(scope="session")
def tiny_run(synthetic_coco, tmp_path_factory):
    """A 4-step run (2 DataLoader workers) → its folder."""
    from steadyseg.train.teacher import train_teacher

    out = tmp_path_factory.mktemp("tiny") / "run"
    train_teacher(synthetic_coco["instances"], synthetic_coco["images"], out, workers=2, **TINY)
    return out


# DDP: N gloo processes on this machine that each run one training function (train_decoder, train_video_model)
# with the same arguments, one torch thread each, as torchrun would start them
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, train_fn, videos, flows, out: str, kwargs: dict) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train_fn(videos, out, flows=flows, device="cpu", **kwargs)


def _spawn_gloo(train_fn, videos, flows, out, kwargs: dict, *, world: int = 2) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(world, _free_port(), train_fn, videos, flows, str(out), kwargs), nprocs=world,
             join=True)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (a test's DDP master port)."""
    return _free_port()


@pytest.fixture
def spawn_gloo():
    """``spawn_gloo(train_fn, videos, flows, out, kwargs, world=2)``: ``train_fn(videos, out, flows=flows,
    device="cpu", **kwargs)`` in ``world`` gloo processes; returns when all have finished."""
    return _spawn_gloo
