"""Models by name: a registry of factories (smallcnn, resnet18, and every torchvision classification model).

`Net` wraps a model with its input preparation (normalisation, grey → RGB for 3-channel models), so that a
checkpoint, `train predict` and an exported model all take the same input: floats in [0, 1], (N, C, H, W).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from storage.errors import GleanerError

__all__ = [
    "MODELS",
    "HalvesPool",
    "MemberLinear",
    "Net",
    "PixelLinear",
    "SmallCNN",
    "build_model",
    "check_model_name",
    "head_name",
    "model_names",
    "register_model",
]

Factory = Callable[..., nn.Module]
MODELS: dict[str, Factory] = {}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def register_model(name: str) -> Callable[[Factory], Factory]:
    def decorate(factory: Factory) -> Factory:
        MODELS[name] = factory
        return factory

    return decorate


class HalvesPool(nn.Module):
    """AdaptiveAvgPool2d(2) written as four slices: the same numbers at every input size, and exportable.

    ONNX has no adaptive pooling, and torch's exporter refuses an output size that does not divide the input
    (28 px → a 3x3 map at depth 3). For an output of 2 the bins are [0, ceil(n/2)) and [floor(n/2), n), which
    slicing reproduces exactly, so checkpoints trained with the adaptive pool load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        rows = ((0, (height + 1) // 2), (height // 2, height))
        cols = ((0, (width + 1) // 2), (width // 2, width))
        cells = [x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)) for r0, r1 in rows for c0, c1 in cols]
        return torch.stack(cells, dim=2).view(x.shape[0], x.shape[1], 2, 2)


class MemberLinear(nn.Module):
    """One linear head per ensemble member: (N, members * features) → (N, members, classes)."""

    def __init__(self, features: int, classes: int, members: int) -> None:
        super().__init__()
        self.members = members
        bound = 1 / features**0.5  # nn.Linear's initialisation, per member
        self.weight = nn.Parameter(torch.empty(members, features, classes).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, classes).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.view(x.shape[0], self.members, -1).transpose(0, 1)  # (members, N, features)
        return (torch.matmul(h, self.weight) + self.bias).transpose(0, 1)  # (N, members, classes)


class SmallCNN(nn.Module):
    """`depth` blocks of (conv 3x3 → batch norm → ReLU) x 2 → max-pool, widths 24, 48, 96, 192; a linear head.

    Small enough to train on a laptop CPU in a minute or two, and the right first model for "is this data any
    good?". Two narrow convolutions per block beat one wide one at the same cost (VGG's observation): on 8,000
    Fashion-MNIST images about +1% test accuracy over single-conv blocks of widths 32, 64, 128.

    `members` > 1 makes it an ensemble of that many independent networks in one module (grouped convolutions:
    member k owns channel group k of every layer, and its own head). In training it returns every member's
    logits, (N, classes, members), so each member is trained on its own loss; in evaluation their mean. On a
    few hundred images one network's test accuracy moves by ±4 points with the seed alone; the mean of
    several is steadier and better, for the price of their compute.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 3, depth: int = 3, width: int = 24, members: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for block in range(depth):
            out = width * 2**block
            for step, conv_in in enumerate((channels, out)):
                first = block == 0 and step == 0  # sees the image: every member reads all input channels
                conv = nn.Conv2d(
                    conv_in if first else conv_in * members, out * members, 3, padding=1, bias=False,
                    groups=1 if first else members,
                )  # fmt: skip
                layers += [conv, nn.BatchNorm2d(out * members), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            channels = out
        self.members = members
        self.features = nn.Sequential(*layers)
        self.pool = HalvesPool()  # keeps a little layout (top/bottom, left/right) for the head
        self.dropout = nn.Dropout(0.2)
        self.fc: nn.Module = (
            nn.Linear(channels * 4, num_classes) if members == 1 else MemberLinear(channels * 4, num_classes, members)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))
        if self.members == 1:
            return logits
        return logits.transpose(1, 2) if self.training else logits.mean(dim=1)


@register_model("smallcnn")
def smallcnn(num_classes: int, in_channels: int, depth: int = 3, members: int = 1, **_: object) -> nn.Module:
    return SmallCNN(num_classes, in_channels, depth, members=members)


def _torchvision(name: str, num_classes: int) -> nn.Module:
    import torchvision

    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except TypeError:  # models with auxiliary heads want them off when trained from a state dict
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, aux_logits=False)


@register_model("resnet18")
def resnet18(num_classes: int, **_: object) -> nn.Module:
    return _torchvision("resnet18", num_classes)


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def model_names() -> list[str]:
    """Registered names; any other torchvision classification model name works too."""
    return sorted(MODELS)


def check_model_name(name: str) -> None:
    """A user error at once for a model name nothing can build (before any snapshot or image work)."""
    if name in MODELS:
        return
    known = torchvision_names()
    if name not in known:
        close = [n for n in known if name.lower()[:4] in n][:6] or known[:6]
        raise GleanerError(f"unknown model {name!r}: use smallcnn, or a torchvision model such as {', '.join(close)}")


def build_model(
    name: str, num_classes: int, in_channels: int, depth: int | None = 3, members: int | None = 1
) -> tuple[nn.Module, int]:
    """(model, the number of input channels it expects). Unknown names are a user error, not a traceback."""
    if name in MODELS:
        model = MODELS[name](num_classes=num_classes, in_channels=in_channels, depth=depth or 3, members=members or 1)
        return model, in_channels if name == "smallcnn" else 3
    check_model_name(name)
    return _torchvision(name, num_classes), 3


def head_name(model: nn.Module) -> str:
    """The classifier head: the last Linear layer (fc, classifier.N, heads.head...). Frozen backbones keep the rest."""
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear | MemberLinear)]
    if not names:
        raise GleanerError(f"{type(model).__name__} has no linear classifier head to train alone")
    return names[-1]


def flip_width(x: torch.Tensor) -> torch.Tensor:
    """Mirror (N, C, H, W) left-right with a gather: the same numbers as `x.flip(-1)`, and exportable to ONNX."""
    width = int(x.shape[-1])  # a constant when traced: exports have a fixed input size
    index = torch.arange(width - 1, -1, -1, device=x.device)
    return x.index_select(-1, index)


class PixelLinear(nn.Module):
    """The run's linear baseline (train.baseline) as one Linear layer on the model's own input.

    The baseline area-averages the image to at most 32 px, standardises each pixel with the training split's
    mean and std and applies W, b. All three steps are linear, so they fold into one matrix on the flattened
    [0, 1] input: the same logits as the baseline, at any input size, in TorchScript and ONNX alike.
    """

    def __init__(self, in_features: int, classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(x, 1))


class Net(nn.Module):
    """Input preparation + model. Input: floats in [0, 1], (N, C, H, W) with C the dataset's channels.

    Two optional parts act only in evaluation (`train predict`, exports, the test split), never in training:
    `flip_tta` averages the logits of the image and its mirror image (for models trained with flips), and
    `baseline`, a PixelLinear set after training (train.blend), is averaged in with weight `blend`:
    the output is then the log of (1 - blend) x model probabilities + blend x baseline probabilities.
    """

    def __init__(
        self,
        body: nn.Module,
        channels: int,
        body_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        flip_tta: bool = False,
    ):
        super().__init__()
        self.body = body
        self.channels = channels
        self.body_channels = body_channels
        self.flip_tta = flip_tta
        self.baseline: PixelLinear | None = None
        self.blend = 0.0
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    mean: torch.Tensor  # registered buffers (typed here: nn.Module's __getattr__ says Tensor | Module)
    std: torch.Tensor

    def model_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model alone (flip test-time augmentation included in evaluation), without the baseline."""
        z = (x - self.mean) / self.std
        if self.body_channels != self.channels:
            z = z.expand(-1, self.body_channels, -1, -1)
        logits = self.body(z)
        if self.flip_tta and not self.training:
            logits = (logits + self.body(flip_width(z))) / 2
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model_logits(x)
        if self.baseline is None or self.training or self.blend <= 0:
            return logits
        mixed = (1 - self.blend) * torch.softmax(logits.float(), dim=1)
        mixed = mixed + self.blend * torch.softmax(self.baseline(x.float()), dim=1)
        return torch.log(mixed.clamp_min(1e-12))


def default_normalization(name: str, channels: int) -> tuple[list[float], list[float]] | None:
    """ImageNet statistics for torchvision models (their pretrained weights expect them); None: use the data's."""
    if name == "smallcnn":
        return None
    if channels == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)
