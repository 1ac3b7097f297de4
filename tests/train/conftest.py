"""Fixtures of the training tests: a synthetic COCO set and one tiny trained teacher shared by eval/predict tests.

Torch runs single-threaded here: the CI machine has 2 cores, and OpenMP threads that compete with other processes
make a step 30x slower.
"""

from __future__ import annotations

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
