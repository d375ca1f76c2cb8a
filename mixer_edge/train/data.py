"""Training batches: raw images augmented one by one, then the checkpoint's own Preprocess, fed by
a DataLoader whose sampler is the same for one process and for torchrun.

Each image's augmentation is seeded by (seed, epoch, index), not by the process or worker that
happens to draw it, so a 2-process run sees the very images a 1-process run sees: DistributedSampler
deals every global batch out in equal parts, and DDP averages their gradients.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..runtime.preprocess import fit_image

SEED_STRIDE = 1_000_003   # epochs apart in the per-image seed space


class TrainImages(Dataset):
    """(x, y): x (C, H, W) float32 preprocessed, y int64; augmented when an augmentation is given.
    images: anything ImageSet.images holds. A streamed folder (runtime/streaming.ImageFiles) is decoded
    image by image here, so in the DataLoader's workers when there are any, a batch at a time."""

    def __init__(self, images, labels: np.ndarray, preprocess, augment=None, seed: int = 0):
        self.images, self.labels, self.preprocess, self.augment = images, labels, preprocess, augment
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = np.asarray(self.images[i])                            # (H, W, C) uint8, as stored
        if self.augment is not None:   # augment at the model's size and channels, as it will see the image
            image = fit_image(image, self.preprocess.to_dict())
            # torchvision draws from the global generator: seed it for this image, then give the caller's
            # state back, so drop path and mixup draw the same with or without worker processes.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * SEED_STRIDE ** 2 + self.epoch * SEED_STRIDE + int(i))
                # A copy: an image decoded from a file (streamed) is a read-only view of Pillow's buffer.
                chw = self.augment(torch.from_numpy(np.array(image.transpose(2, 0, 1), order="C")))
            image = chw.numpy().transpose(1, 2, 0)                    # (H, W, C) uint8 again
        x = self.preprocess(image[None])[0]                           # (C, H, W) float32, as at inference
        return torch.from_numpy(x), int(self.labels[i])


def loader(data: TrainImages, batch_size: int, world, workers: int, seed: int) -> DataLoader:
    """batch_size is the global batch; each process loads its part. Full batches only."""
    sampler = DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=seed,
                                 drop_last=True)
    return DataLoader(data, batch_size=batch_size // world.size, sampler=sampler, drop_last=True,
                      num_workers=workers)   # workers re-made each epoch: they see the new epoch


def set_epoch(batches: DataLoader, epoch: int) -> None:
    """A new shuffle and new augmentations each epoch, the same in every process."""
    batches.sampler.set_epoch(epoch)
    batches.dataset.epoch = epoch
