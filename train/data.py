"""Training data for teachers: torchvision's segmentation presets, one seeded random stream per sample.

Transforms (torchvision ``references/segmentation/presets.py``), applied to an ``(H, W, 3) uint8`` RGB image and
its ``(H, W) uint8`` target (0 background, classes, 255 void):

* train: random resize of the shorter side to an integer in ``[min_scale·base, max_scale·base]`` (image bilinear
  — area averaging when shrinking —, target nearest), horizontal flip with probability ``hflip_prob``, pad to
  ``crop`` on the right/bottom (image 0, target 255) and a random ``crop × crop`` window, ImageNet normalisation;
* eval: resize of the shorter side to ``base``, normalisation.

Randomness: the augmentation of sample ``index`` in epoch ``epoch`` draws from
``numpy.random.default_rng([seed, epoch, index])``, so it does not depend on the worker that loads it, on the
number of processes, or on where a resumed run starts. :class:`EpochSampler` yields ``(epoch, index)`` pairs and
can start in the middle of an epoch.

Decoded targets are cached per image as PNGs in ``target_cache`` (written atomically by whichever worker decodes
an image first), so the COCO polygons and RLEs are decoded once per run, not once per epoch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from steadyseg.labels import VOID

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "resize_shorter", "train_transform", "eval_transform", "normalize",
           "SegmentationSamples", "EpochSampler", "collate"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_shorter(image: np.ndarray, target: np.ndarray | None, size: int
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Resize so the shorter side is ``size`` (torchvision's rule: the longer side is ``int(size · long / short)``).

    Image ``(H, W, 3) uint8``: bilinear (area averaging when shrinking); target ``(H, W) uint8``: nearest.
    """
    h, w = image.shape[:2]
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    if (nh, nw) == (h, w):
        return image, target
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
    image = cv2.resize(image, (nw, nh), interpolation=interp)
    if target is not None:
        target = cv2.resize(target, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return image, target


def normalize(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3) uint8`` RGB → ``(3, H, W) float32`` ImageNet-normalised tensor."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def train_transform(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, *, base_size: int,
                    crop_size: int, min_scale: float = 0.5, max_scale: float = 2.0, hflip_prob: float = 0.5
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's train preset. Returns ``(3, crop, crop) float32`` and ``(crop, crop) int64`` (255 void)."""
    size = int(rng.integers(int(min_scale * base_size), int(max_scale * base_size) + 1))
    image, target = resize_shorter(image, target, size)
    if rng.random() < hflip_prob:
        image, target = image[:, ::-1], target[:, ::-1]
    h, w = target.shape
    ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=0)
        target = np.pad(target, ((0, ph), (0, pw)), constant_values=VOID)
        h, w = target.shape
    i = int(rng.integers(0, h - crop_size + 1))
    j = int(rng.integers(0, w - crop_size + 1))
    image = image[i:i + crop_size, j:j + crop_size]
    target = target[i:i + crop_size, j:j + crop_size]
    return normalize(image), torch.from_numpy(np.ascontiguousarray(target)).long()


def eval_transform(image: np.ndarray, target: np.ndarray | None, *, base_size: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """torchvision's eval preset: shorter side → ``base_size``; ``(3, h, w) float32`` and ``(h, w) int64``."""
    image, target = resize_shorter(image, target, base_size)
    t = None if target is None else torch.from_numpy(np.ascontiguousarray(target)).long()
    return normalize(image), t


class SegmentationSamples(torch.utils.data.Dataset):
    """Images and semantic targets of a :class:`~steadyseg.datasets.coco_targets.CocoSemanticTargets` set.

    ``samples[(epoch, index)]`` → ``(image (3, crop, crop) float32, target (crop, crop) int64)`` with the train
    transform (``train=True``), or ``samples[index]`` → eval-transformed ``(3, h, w)``, ``(h, w)`` (any size).

    Args:
        targets: the COCO set (decides which images and labels).
        train: train or eval transform.
        base_size, crop_size, min_scale, max_scale, hflip_prob: transform parameters (see the module doc).
        seed: seeds every sample's augmentation together with ``(epoch, index)``.
        target_cache: folder for decoded targets (``<image id>.png``); ``None`` decodes every time.
    """

    def __init__(self, targets, *, train: bool, base_size: int, crop_size: int, min_scale: float = 0.5,
                 max_scale: float = 2.0, hflip_prob: float = 0.5, seed: int = 0,
                 target_cache: str | os.PathLike | None = None):
        self.targets = targets
        self.train = train
        self.base_size, self.crop_size = int(base_size), int(crop_size)
        self.min_scale, self.max_scale, self.hflip_prob = float(min_scale), float(max_scale), float(hflip_prob)
        self.seed = int(seed)
        self.target_cache = None if target_cache is None else Path(target_cache)

    def __len__(self) -> int:
        return len(self.targets)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3) uint8`` image and ``(H, W) uint8`` target of sample ``index`` (target from the cache)."""
        from steadyseg.datasets.video import read_image_rgb

        img_id = self.targets.image_ids[index]
        image = read_image_rgb(self.targets.image_path(img_id))
        target = None
        cached = None if self.target_cache is None else self.target_cache / f"{img_id}.png"
        if cached is not None and cached.is_file():
            target = cv2.imread(str(cached), cv2.IMREAD_UNCHANGED)
        if target is None:
            target = self.targets.target(img_id)
            if cached is not None:
                from steadyseg.files import atomic_write_bytes

                ok, buf = cv2.imencode(".png", target)
                if ok:
                    atomic_write_bytes(cached, buf.tobytes())
        if target.shape != image.shape[:2]:
            raise ValueError(f"{self.targets.image_path(img_id)}: image is {image.shape[1]}x{image.shape[0]} but "
                             f"its annotations say {target.shape[1]}x{target.shape[0]} (WxH)")
        return image, target

    def __getitem__(self, key):
        if self.train:
            epoch, index = key
            image, target = self.load(index)
            rng = np.random.default_rng([self.seed, int(epoch), int(index)])
            return train_transform(image, target, rng, base_size=self.base_size, crop_size=self.crop_size,
                                   min_scale=self.min_scale, max_scale=self.max_scale, hflip_prob=self.hflip_prob)
        image, target = self.load(int(key))
        return eval_transform(image, target, base_size=self.base_size)


class EpochSampler(torch.utils.data.Sampler):
    """``(epoch, index)`` pairs for one process: a seeded permutation per epoch, split across processes.

    Like ``DistributedSampler(shuffle=True, drop_last=True)``: epoch ``e``'s order is
    ``torch.randperm(n, generator=seed + e)``, truncated to a multiple of ``num_replicas · batch_size`` so every
    process runs the same number of full batches; process ``rank`` takes every ``num_replicas``-th index. Iteration
    starts at epoch ``start_epoch``, skipping the first ``start_batch`` batches of it (an exact resume), and
    continues through later epochs without end; ``batches_per_epoch`` tells how many batches one epoch has.
    """

    def __init__(self, n: int, *, batch_size: int, seed: int = 0, num_replicas: int = 1, rank: int = 0,
                 start_epoch: int = 0, start_batch: int = 0):
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.start_epoch, self.start_batch = int(start_epoch), int(start_batch)
        self.batches_per_epoch = self.n // (self.num_replicas * self.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError(f"{self.n} training images are fewer than one batch of {self.batch_size} per process "
                             f"× {self.num_replicas} processes")

    def epoch_indices(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + int(epoch))
        order = torch.randperm(self.n, generator=g).tolist()
        order = order[: self.batches_per_epoch * self.batch_size * self.num_replicas]
        return order[self.rank::self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, skip = self.start_epoch, self.start_batch * self.batch_size
        while True:
            for index in self.epoch_indices(epoch)[skip:]:
                yield (epoch, index)
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:  # one epoch; the iterator itself does not end
        return self.batches_per_epoch * self.batch_size


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack(images), torch.stack(targets)


def steps_for(epochs: float, batches_per_epoch: int) -> int:
    return max(1, int(math.ceil(epochs * batches_per_epoch)))
