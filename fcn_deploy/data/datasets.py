"""torch Datasets over a VOC layout: random training crops (d2l) and whole, padded validation images.

torch is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fcn_deploy.data.transforms import (
    Size,
    aligned_size,
    crop_pair,
    normalize_image,
    pad_pair,
    random_crop_box,
)
from fcn_deploy.data.voc import SplitScan, VocLayout, read_pair
from fcn_deploy.deps import require

if TYPE_CHECKING:  # pragma: no cover
    import torch

_CLASSES: dict[str, type] = {}


def _dataset_classes() -> dict[str, type]:
    """Define the Dataset classes once torch is imported."""
    if _CLASSES:
        return _CLASSES
    torch = require("torch")
    data = require("torch.utils.data")

    class PairDataset(data.Dataset):
        """The scanned pairs of a split, normalised with ``mean``/``std``."""

        def __init__(self, layout: VocLayout, scan: SplitScan, mean, std) -> None:
            self.layout, self.scan = layout, scan
            self.mean, self.std = tuple(mean), tuple(std)

        def __len__(self) -> int:
            return len(self.scan.ids)

    class CropDataset(PairDataset):
        """Random ``crop`` windows of the scanned (large enough) pairs; a new window per access."""

        def __init__(self, layout: VocLayout, scan: SplitScan, crop: Size, mean, std) -> None:
            super().__init__(layout, scan, mean, std)
            self.crop = crop

        def __getitem__(self, index: int):
            image, mask = read_pair(self.layout, self.scan.ids[index])
            # draw from torch's generator so DataLoader seeding (and its per-worker seeds) governs the crops
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            top, left = random_crop_box(mask.shape, self.crop, rng)
            image, mask = crop_pair(image, mask, top, left, self.crop)
            return (
                torch.from_numpy(normalize_image(image, self.mean, self.std)),
                torch.from_numpy(mask.astype(np.int64)),
            )

    class WholeImageDataset(PairDataset):
        """Every pair of the split at full size; ``pad_collate`` pads batches to 32-multiples."""

        def __getitem__(self, index: int):
            image, mask = read_pair(self.layout, self.scan.ids[index])
            return normalize_image(image, self.mean, self.std), mask

    _CLASSES.update(CropDataset=CropDataset, WholeImageDataset=WholeImageDataset)
    return _CLASSES


def crop_dataset(layout: VocLayout, scan: SplitScan, crop: Size, mean: Sequence[float], std: Sequence[float]) -> Any:
    """Training dataset: one random ``crop`` of each kept pair per epoch (images below the crop are not in ``scan``)."""
    return _dataset_classes()["CropDataset"](layout, scan, crop, mean, std)


def whole_image_dataset(layout: VocLayout, scan: SplitScan, mean: Sequence[float], std: Sequence[float]) -> Any:
    """Evaluation dataset: whole images, to be batched with ``pad_collate``."""
    return _dataset_classes()["WholeImageDataset"](layout, scan, mean, std)


def pad_collate(batch: Sequence[tuple[np.ndarray, np.ndarray]], alignment: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack whole images padded (bottom/right) to the batch's largest size rounded up to ``alignment``.

    Padded pixels get the mean colour and the void label, so they count in neither loss nor metrics.
    """
    torch = require("torch")
    height = max(image.shape[1] for image, _ in batch)
    width = max(image.shape[2] for image, _ in batch)
    size = aligned_size((height, width), alignment)
    padded = [pad_pair(image, mask, size) for image, mask in batch]
    images = torch.from_numpy(np.stack([image for image, _ in padded]))
    masks = torch.from_numpy(np.stack([mask for _, mask in padded]).astype(np.int64))
    return images, masks
