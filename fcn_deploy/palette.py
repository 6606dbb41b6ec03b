"""The PASCAL VOC class names and colormap, defined once for the whole package."""

from __future__ import annotations

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv/monitor",
)

VOID_LABEL = 255


def voc_colormap(num_colors: int = 256) -> tuple[tuple[int, int, int], ...]:
    """The VOC palette: colour i spreads the bits of i over R, G and B from the high bit down."""
    colors = []
    for index in range(num_colors):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colors.append((r, g, b))
    return tuple(colors)


VOC_COLORMAP: tuple[tuple[int, int, int], ...] = voc_colormap(21)
# The palette PNG masks of VOC store 256 entries; 255 (void) is drawn light beige.
VOC_PNG_PALETTE: tuple[tuple[int, int, int], ...] = voc_colormap(256)


def png_palette_bytes(colors: tuple[tuple[int, int, int], ...] = VOC_PNG_PALETTE) -> list[int]:
    """Flat [r, g, b, r, g, b, ...] list for ``PIL.Image.putpalette``, padded to 256 entries."""
    flat = [channel for color in colors for channel in color]
    return flat + [0] * (768 - len(flat))
