"""Augmentations by name, applied to whole batches on the training device with per-image random parameters.

Working on the batch (one `grid_sample` for all geometric changes, vector maths for colour and noise) keeps
augmentation off the critical path on a 2-core CPU and on the GPU alike; torchvision's transforms would draw
one set of parameters per call, i.e. per batch, which is not what augmentation is for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from storage.errors import GleanerError

__all__ = ["AUGMENTATIONS", "BatchAugment", "augmentation_names", "parse_augment"]

# name → (kind, function). Geometric functions return per-image 2x3 affine matrices (output → input
# coordinates, in [-1, 1] units); photometric ones map a float batch in [0, 1] to another.
Geometric = Callable[[int, torch.Generator], torch.Tensor]
Photometric = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: dict[str, tuple[str, Callable[..., torch.Tensor]]] = {}


def register(name: str, kind: str) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    def decorate(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        AUGMENTATIONS[name] = (kind, fn)
        return fn

    return decorate


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (high - low) + low


def _identity(n: int) -> torch.Tensor:
    return torch.eye(2, 3).repeat(n, 1, 1)


@register("flip", "geometric")
def flip(n: int, g: torch.Generator) -> torch.Tensor:
    """Mirror left-right half of the images (clothes, animals, most objects look the same mirrored)."""
    theta = _identity(n)
    theta[:, 0, 0] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return theta


@register("rotate", "geometric")
def rotate(n: int, g: torch.Generator, degrees: float = 15.0) -> torch.Tensor:
    angle = _uniform(n, -degrees, degrees, g) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    return theta


@register("zoom", "geometric")
def zoom(n: int, g: torch.Generator, scale: tuple[float, float] = (0.6, 1.0)) -> torch.Tensor:
    """Random-resized crop: a random part (60-100% of the area, aspect 3:4 to 4:3) stretched to the full size."""
    area = _uniform(n, *scale, g)
    log_ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), g)
    ratio = torch.exp(log_ratio)
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = width, height
    theta[:, 0, 2] = (torch.rand(n, generator=g) * 2 - 1) * (1 - width)
    theta[:, 1, 2] = (torch.rand(n, generator=g) * 2 - 1) * (1 - height)
    return theta


AUGMENTATIONS["random-resized-crop"] = AUGMENTATIONS["zoom"]


@register("translate", "geometric")
def translate(n: int, g: torch.Generator, fraction: float = 0.1) -> torch.Tensor:
    theta = _identity(n)
    theta[:, 0, 2] = _uniform(n, -2 * fraction, 2 * fraction, g)
    theta[:, 1, 2] = _uniform(n, -2 * fraction, 2 * fraction, g)
    return theta


@register("shift", "pixel-geometric")
def shift(n: int, g: torch.Generator, height: int, width: int, fraction: float = 0.125) -> torch.Tensor:
    """Whole-pixel shifts up to 1/8 of the side (at least 1 px), edges repeated: the pad-and-crop of small-image
    training. Whole pixels keep images sharp, which matters at 8-32 px where a half-pixel blur is a lot."""
    theta = _identity(n)
    for axis, side in ((0, width), (1, height)):
        reach = max(1, round(side * fraction))
        pixels = torch.randint(-reach, reach + 1, (n,), generator=g).float()
        theta[:, axis, 2] = pixels * 2 / side
    return theta


@register("color", "photometric")
def color(x: torch.Tensor, g: torch.Generator, strength: float = 0.25) -> torch.Tensor:
    """Brightness, contrast and (for colour images) saturation, each scaled by up to ±25% per image."""
    n = x.shape[0]
    shape = (n, 1, 1, 1)
    brightness = _uniform(n, 1 - strength, 1 + strength, g).view(shape).to(x.device)
    contrast = _uniform(n, 1 - strength, 1 + strength, g).view(shape).to(x.device)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean
    if x.shape[1] == 3:
        saturation = _uniform(n, 1 - strength, 1 + strength, g).view(shape).to(x.device)
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
        x = (x - grey) * saturation + grey
    return x.clamp(0, 1)


AUGMENTATIONS["brightness"] = AUGMENTATIONS["color"]


@register("noise", "photometric")
def noise(x: torch.Tensor, g: torch.Generator, std: float = 0.03) -> torch.Tensor:
    """Gaussian sensor-like noise; its strength varies per image between none and `std`."""
    level = torch.rand(x.shape[0], 1, 1, 1, generator=g).to(x.device) * std
    sample = torch.randn(x.shape, generator=g).to(x.device)
    return (x + sample * level).clamp(0, 1)


@register("erase", "photometric")
def erase(x: torch.Tensor, g: torch.Generator, p: float = 0.5, area: tuple[float, float] = (0.02, 0.2)) -> torch.Tensor:
    """Random erasing (cutout): half of the images lose a random rectangle (2-20% of the area) to noise,
    so the model cannot lean on any single part of an object."""
    n, _, height, width = x.shape
    share = _uniform(n, *area, g)
    aspect = torch.exp(_uniform(n, math.log(0.3), math.log(3.3), g))
    h = (torch.sqrt(share * aspect) * height).clamp(1, height).long()
    w = (torch.sqrt(share / aspect) * width).clamp(1, width).long()
    top = (torch.rand(n, generator=g) * (height - h + 1)).long()
    left = (torch.rand(n, generator=g) * (width - w + 1)).long()
    chosen = torch.rand(n, generator=g) < p
    rows = torch.arange(height).view(1, height, 1)
    cols = torch.arange(width).view(1, 1, width)
    inside = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + h).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + w).view(n, 1, 1))
        & chosen.view(n, 1, 1)
    )
    fill = torch.rand(x.shape, generator=g).to(x.device)
    return torch.where(inside.unsqueeze(1).to(x.device), fill, x)


AUGMENTATIONS["cutout"] = AUGMENTATIONS["erase"]


def augmentation_names() -> list[str]:
    return sorted(AUGMENTATIONS)


def parse_augment(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """'flip,rotate' → ('flip', 'rotate'); unknown names are a user error that lists the known ones."""
    if not text:
        return ()
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(p.strip().lower() for p in parts if p.strip() and p.strip().lower() != "none")
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise GleanerError(f"unknown augmentation {unknown[0]!r}; choose from {', '.join(augmentation_names())}")
    return names


class BatchAugment:
    """Callable on a float batch in [0, 1] (N, C, H, W); `auto_augment` adds torchvision's ImageNet AutoAugment."""

    def __init__(self, names: Sequence[str], auto_augment: bool = False) -> None:
        self.names = tuple(names)
        self.auto = None
        if auto_augment:
            from torchvision.transforms import v2

            self.auto = v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)

    def __bool__(self) -> bool:
        return bool(self.names) or self.auto is not None

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.auto is not None:  # per image, on uint8 (its ops are defined there); uses torch's global RNG
            as_bytes = (x * 255).round().to(torch.uint8)
            x = torch.stack([self.auto(image) for image in as_bytes]).float() / 255
        n, _, height, width = x.shape
        geometric = [AUGMENTATIONS[name] for name in self.names if AUGMENTATIONS[name][0].endswith("geometric")]
        if geometric:
            theta = _identity(n)
            for kind, fn in geometric:
                step = fn(n, g, height, width) if kind == "pixel-geometric" else fn(n, g)
                theta = _compose(theta, step)
            grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        for name in self.names:
            kind, fn = AUGMENTATIONS[name]
            if kind == "photometric":
                x = fn(x, g)
        return x


def _compose(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """The affine map that applies `first` to the output coordinates, then `second`."""
    pad = torch.tensor([0.0, 0.0, 1.0]).expand(first.shape[0], 1, 3)
    a = torch.cat([first, pad], dim=1)
    b = torch.cat([second, pad], dim=1)
    return torch.bmm(b, a)[:, :2, :]
