"""Per-image training augmentation, from torchvision's transforms v2, by name.

Mixers overfit small data fast (the paper's lesson); these policies are the regularizers timm's
training script would apply, chosen to fit the image size. Horizontal flips are never implied:
they turn digits and text into other symbols (--hflip asks for them). docs/training.md has the
measurements behind the defaults.

    policy(name, size) -> a callable on one (C, H, W) uint8 tensor, returning the same
"""
from __future__ import annotations

from ..errors import unknown

SMALL_SIDE = 64   # below this (digits, MNIST, CIFAR) crops lose too much: translate / rotate / scale instead
TINY_SIDE = 16    # below this (8x8 digits) any resampling blurs the image away: auto means none


def _v2():
    from ..errors import MissingDependency

    try:
        from torchvision.transforms import v2
    except ImportError:
        raise MissingDependency("training augmentation needs torchvision: pip install torchvision "
                                "(the build matching your torch), or train with --augment none") from None
    return v2


def _geometry(v2, size):
    """Small images: a random affine (rotate 10 degrees, translate 10 %, scale 0.9-1.1), as timm's
    random-resized crop would crop away most of a 28-pixel digit. Larger: random-resized crop."""
    if min(size) < SMALL_SIDE:
        return v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
    return v2.RandomResizedCrop(tuple(size), scale=(0.35, 1.0), antialias=True)


def _auto(v2, size):
    """The default: geometry for the image size, then an elastic distortion on half the small images
    (the classic handwriting augmentation) or TrivialAugment on larger ones; nothing on tiny ones."""
    if min(size) < TINY_SIDE:
        return v2.Identity()
    if min(size) < SMALL_SIDE:
        k = min(size) / 28   # Simard et al.'s alpha 34, sigma 4 are for 28-pixel digits
        elastic = v2.ElasticTransform(alpha=34.0 * k, sigma=4.0 * k)
        return v2.Compose([_geometry(v2, size), v2.RandomApply([elastic], p=0.5)])
    return v2.Compose([_geometry(v2, size), v2.TrivialAugmentWide()])


POLICIES = {
    "auto": _auto,
    "geometry": _geometry,
    "shift": lambda v2, size: v2.RandomAffine(degrees=0, translate=(0.1, 0.1)),   # translation only
    "randaugment": lambda v2, size: v2.Compose([_geometry(v2, size), v2.RandAugment(num_ops=2, magnitude=9)]),
    "trivialaugment": lambda v2, size: v2.Compose([_geometry(v2, size), v2.TrivialAugmentWide()]),
    "none": None,
}


def policy(name: str, size, hflip: bool = False):
    """The augmentation for images of `size` (H, W) at their stored size, or None for none."""
    if name not in POLICIES:
        raise unknown("augmentation", name, POLICIES)
    if POLICIES[name] is None and not hflip:
        return None
    v2 = _v2()
    steps = [] if POLICIES[name] is None else [POLICIES[name](v2, size)]
    return v2.Compose(steps + ([v2.RandomHorizontalFlip()] if hflip else []))


def mixing(mixup: float, cutmix: float, num_classes: int):
    """Batch-level mixup / cutmix (one of the two per batch when both are on), or None."""
    if mixup <= 0 and cutmix <= 0:
        return None
    v2 = _v2()
    chosen = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + \
        ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
    return chosen[0] if len(chosen) == 1 else v2.RandomChoice(chosen)
