from __future__ import annotations

import torch

from jupyter_torchlab.train.models import ResNet9, TutorialNet, count_parameters


def test_tutorial_net_is_the_tutorials_network():
    net = TutorialNet()
    assert count_parameters(net) == 62_006
    # same attribute names as the tutorial's Net, so its state dicts load unchanged
    assert list(net.state_dict()) == [
        f"{layer}.{p}"
        for layer in ("conv1", "conv2", "fc1", "fc2", "fc3")
        for p in ("weight", "bias")
    ]
    assert net(torch.zeros(4, 3, 32, 32)).shape == (4, 10)


def test_resnet9_shapes_and_width():
    small = ResNet9(width=8, num_classes=7)
    assert small(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert count_parameters(ResNet9(width=16)) < count_parameters(ResNet9(width=32))
    assert 6_000_000 < count_parameters(ResNet9()) < 7_000_000
