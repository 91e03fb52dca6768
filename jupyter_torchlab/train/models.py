"""The tutorial's network, and a faster, stronger one for accelerators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet9", "TutorialNet", "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Return the number of (trainable) parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class TutorialNet(nn.Module):
    """The official PyTorch "Training a Classifier" network: two conv layers, three linear layers.

    Same layers and attribute names as the tutorial's ``Net``, so state dicts load either way;
    62,006 parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of 3x32x32 images to 10 class scores."""
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def _conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(channels, channels), _conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9(nn.Module):
    """A ResNet-9 style network (the DAWNBench CIFAR-10 design): fast on GPUs, ~94% on CIFAR-10.

    ``width`` is the first stage's channel count; stages use width, 2x, 4x, 8x. The default
    (64) has about 6.6M parameters; ``width=16`` is small enough to try on a CPU.
    """

    def __init__(self, width: int = 64, num_classes: int = 10) -> None:
        super().__init__()
        if width < 1 or num_classes < 2:
            raise ValueError(
                f"ResNet9 needs width >= 1 and num_classes >= 2, got {width}, {num_classes}"
            )
        w = width
        self.features = nn.Sequential(
            _conv_bn(3, w),
            _conv_bn(w, 2 * w),
            nn.MaxPool2d(2),
            _Residual(2 * w),
            _conv_bn(2 * w, 4 * w),
            nn.MaxPool2d(2),
            _conv_bn(4 * w, 8 * w),
            nn.MaxPool2d(2),
            _Residual(8 * w),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(8 * w, num_classes)
        # scaling the logits down keeps the early loss sane with the large lr this net trains at
        self.logit_scale = 0.125

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a batch of 3xHxW images to class scores."""
        return self.classifier(self.features(x)) * self.logit_scale
