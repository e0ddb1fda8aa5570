"""ResNets scaled by width (channels) or by depth (blocks per stage), built from torchvision's own ResNet.

``ScaledResNet`` subclasses ``torchvision.models.resnet.ResNet`` and reuses its blocks (``BasicBlock``,
``Bottleneck``), its ``_make_layer`` and its forward pass; only the constructor differs, because torchvision
fixes the four stages at 64/128/256/512 channels. Here stage i has ``width · 2^i`` channels (width 64 is the
standard ResNet, a width multiplier k is ``width = 64·k``), the input may have 1 or 3 channels, and tiny
images (CIFAR, 8×8 digits) get the small-input stem: one 3×3 stride-1 convolution and no max-pool, instead of
the 7×7 stride-2 convolution + max-pool that would shrink a 32×32 input to 8×8 before the first stage.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

SMALL_INPUT_MAX = 64  # images up to 64×64 get the small-input stem

# Depth → (block, blocks per stage), as in torchvision (18/34/50/101/152) plus ResNet-10 and bottleneck ResNet-26.
DEPTHS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    26: (Bottleneck, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ScaledResNet(ResNet):
    """torchvision's ResNet with stage widths ``width·(1, 2, 4, 8)``, ``in_channels`` inputs and a stem
    chosen for the input size. Initialization is torchvision's (Kaiming conv, unit BN), with the last BN of
    every residual branch zeroed (``zero_init_residual``), which helps most at large batch sizes."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, ...] | list[int],
                 num_classes: int, width: int = 64, in_channels: int = 3, small_input: bool = False,
                 zero_init_residual: bool = True) -> None:
        if width < 1 or num_classes < 2 or len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"bad ResNet shape: width={width}, num_classes={num_classes}, layers={list(layers)}")
        nn.Module.__init__(self)  # ResNet.__init__ hard-codes 64 channels; the rest of the class is reused
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.width, self.small_input = width, small_input
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)


def depth_layout(depth: int) -> tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]:
    """Block type and blocks per stage of a standard depth."""
    try:
        return DEPTHS[depth]
    except KeyError:
        raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}") from None


def build_model(family: str, width: int, num_classes: int, *, in_channels: int = 3, image_size: int = 224,
                depth: int = 18, channels: int = 64) -> ScaledResNet:
    """The model of a family at one ``width`` (the orchestrator's model-size knob).

    * ``resnet``: ``width`` = channels of the first stage (64 = standard), depth fixed by ``depth``;
    * ``resnet_depth``: ``width`` = residual blocks per stage n (BasicBlock, depth 8n + 2: 1 → ResNet-10,
      2 → ResNet-18), first-stage channels fixed by ``channels``.
    """
    small = image_size <= SMALL_INPUT_MAX
    if family == "resnet":
        block, layers = depth_layout(depth)
        return ScaledResNet(block, layers, num_classes, width=width, in_channels=in_channels, small_input=small)
    if family == "resnet_depth":
        if width < 1:
            raise ValueError(f"resnet_depth width (blocks per stage) must be >= 1, got {width}")
        return ScaledResNet(BasicBlock, (width,) * 4, num_classes, width=channels, in_channels=in_channels,
                            small_input=small)
    raise KeyError(f"no image model for family {family!r}; known: resnet, resnet_depth")

