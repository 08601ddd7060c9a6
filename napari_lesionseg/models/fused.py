"""The inference form of a network: batch norm folded into its convolutions, each ReLU fused into its convolution.

In eval mode a batch norm after a convolution is a per-channel affine map, so it folds into the
convolution's weights and bias; the ReLU after it then runs inside the convolution (oneDNN's
post-op on the CPU) instead of as another pass over the maps. The FC-DenseNet's stride-2 output
head (a 2x2x2 stride-2 transposed convolution, batch norm, ReLU, then the 1x1x1 classifier) becomes
one 1x1x1 convolution to the eight sub-voxels' maps, the classifier applied to each sub-voxel, and
a depth-to-space. That head ran at the full patch resolution and took more than half of the
compact network's time on the CPU.

The form equals the network in eval mode (float32: to rounding, `tests/models/test_fused.py`). It
is built from the current weights for one inference run and never trained or saved; training and
checkpoints use the network itself.

Example:
    >>> network = fused_for_inference(model.eval())  # doctest: +SKIP
    >>> with torch.inference_mode():  # doctest: +SKIP
    ...     logits = network(x)  # equal to model(x)
"""

from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from napari_lesionseg.models.fcdensenet import FCDenseNet3D

__all__ = ["fused_for_inference", "inference_copy"]

_CONVOLUTIONS = (nn.Conv3d, nn.ConvTranspose3d)
#: Voxels per block of the output head on the CPU: the compact network's 8,192 x 624 bfloat16 maps (10 MB) stay in cache.
_CPU_VOXEL_BLOCK = 8192


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode without gradients, as trained (`model` itself is left alone)."""
    network = copy.deepcopy(model).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
        parameter.grad = None
    return network


def fused_for_inference(model: nn.Module) -> nn.Module:
    """A copy of `model` for inference only (eval mode, no gradients), equal to `model` in eval mode."""
    network = inference_copy(model)
    if not _finite(network):  # a fused ReLU maps NaN to 0: leave the network as it is, so its output shows it
        return network
    if isinstance(network, FCDenseNet3D):
        _fuse_subvoxel_head(network)
    for module in list(network.modules()):
        if isinstance(module, nn.Sequential):
            _fuse_sequential(module)
    return network


class FusedConv(nn.Module):
    """A convolution with folded batch norm and an optional ReLU run inside it where oneDNN can."""

    def __init__(self, conv: nn.Conv3d | nn.ConvTranspose3d, norm: nn.BatchNorm3d | None, relu: bool) -> None:
        super().__init__()
        self.conv = conv
        self.relu = relu
        weight, bias = _folded(conv, norm)
        conv.weight = nn.Parameter(weight, requires_grad=False)
        conv.bias = nn.Parameter(bias, requires_grad=False)
        self.in_channels = conv.in_channels
        self.pointwise = (  # the fused op knows zero padding by numbers only
            relu and isinstance(conv, nn.Conv3d) and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        dtype = _compute_dtype(x)
        if self.pointwise and _pointwise_ready(x, dtype):
            return torch.ops.mkldnn._convolution_pointwise(
                x.to(dtype), conv.weight.to(dtype), conv.bias.to(dtype), list(conv.padding), list(conv.stride),
                list(conv.dilation), conv.groups, "relu", [], "",
            )
        y = conv(x)
        return F.relu(y, inplace=True) if self.relu else y


class SubvoxelHead(nn.Module):
    """A 2x2x2 stride-2 transposed convolution (+ folded batch norm, ReLU) and a 1x1x1 classifier, at input resolution.

    The transposed convolution's eight kernel taps become eight groups of output maps of one
    matrix product per voxel; the classifier maps each group to one logit; a depth-to-space puts
    the eight logits of every voxel at its eight sub-voxels. On the CPU the voxels go through in
    blocks whose maps stay in cache, so the eight-fold maps are never written out whole.
    """

    def __init__(self, up: nn.ConvTranspose3d, norm: nn.BatchNorm3d, classifier: nn.Conv3d) -> None:
        super().__init__()
        weight, bias = _folded(up, norm)  # (in, out, 2, 2, 2), (out,)
        in_ch, out_ch = weight.shape[:2]
        # row ((kd * 2 + kh) * 2 + kw) * out + o holds tap (kd, kh, kw) of output map o
        self.register_buffer("expand_weight", weight.permute(2, 3, 4, 1, 0).reshape(8 * out_ch, in_ch).contiguous())
        self.register_buffer("expand_bias", bias.repeat(8).contiguous())
        # one row per sub-voxel, the classifier's weights in that sub-voxel's columns: a small matrix product, not 8 dot products
        per_subvoxel = classifier.weight.detach().reshape(1, out_ch)
        self.register_buffer("classifier_weight", torch.block_diag(*[per_subvoxel] * 8).contiguous())
        self.register_buffer("classifier_bias", classifier.bias.detach().clone())
        self.in_channels, self.out_channels = in_ch, out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, d, h, w = x.shape
        voxels = x.permute(0, 2, 3, 4, 1).reshape(-1, self.in_channels)  # a view when x is channels-last
        dtype = _compute_dtype(x)
        weight, bias = self.expand_weight.to(dtype), self.expand_bias.to(dtype)
        classifier = self.classifier_weight.to(dtype)
        block = _CPU_VOXEL_BLOCK if x.device.type == "cpu" else len(voxels)
        logits = torch.empty((len(voxels), 8), dtype=dtype, device=x.device)
        for start in range(0, len(voxels), block):
            maps = _linear_relu(voxels[start : start + block].to(dtype), weight, bias)
            logits[start : start + block] = F.linear(maps, classifier)
        logits += self.classifier_bias.to(dtype)
        logits = logits.view(b, d, h, w, 2, 2, 2).permute(0, 1, 4, 2, 5, 3, 6)
        return logits.reshape(b, 1, 2 * d, 2 * h, 2 * w)


def _linear_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``relu(x @ weight.T + bias)``, in one oneDNN call on the CPU where it works."""
    if _pointwise_ready(x, x.dtype):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu", [], "")
    return F.linear(x, weight, bias).relu_()


def _fuse_sequential(sequence: nn.Sequential) -> None:
    """Replace each convolution [+ batch norm] [+ ReLU] run of `sequence` by one `FusedConv` (in place)."""
    children = list(sequence.children())
    i = 0
    while i < len(children):
        if not isinstance(children[i], _CONVOLUTIONS):
            i += 1
            continue
        end = i + 1
        norm = children[end] if end < len(children) and _foldable(children[end], children[i]) else None
        end += norm is not None
        relu = end < len(children) and isinstance(children[end], nn.ReLU)
        end += relu
        sequence[i] = FusedConv(children[i], norm, relu)
        for j in range(i + 1, end):
            sequence[j] = nn.Identity()
        i = end


def _fuse_subvoxel_head(network: FCDenseNet3D) -> None:
    head = list(network.output_up.children()) if isinstance(network.output_up, nn.Sequential) else []
    classifier = network.classifier
    fits = (
        len(head) == 3
        and isinstance(head[0], nn.ConvTranspose3d)
        and tuple(head[0].kernel_size) == tuple(head[0].stride) == (2, 2, 2)
        and tuple(head[0].padding) == tuple(head[0].output_padding) == (0, 0, 0)
        and head[0].groups == 1
        and _foldable(head[1], head[0])
        and isinstance(head[2], nn.ReLU)
        and isinstance(classifier, nn.Conv3d)
        and tuple(classifier.kernel_size) == (1, 1, 1)
        and classifier.out_channels == 1
        and classifier.bias is not None
    )
    if fits:
        network.classifier = SubvoxelHead(head[0], head[1], classifier)
        network.output_up = nn.Identity()


def _finite(network: nn.Module) -> bool:
    tensors = (*network.parameters(), *network.buffers())
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def _foldable(module: nn.Module, conv: nn.Module) -> bool:
    """Whether `module` is a batch norm with running statistics that folds into `conv` before it."""
    tracked = isinstance(module, nn.BatchNorm3d) and module.running_mean is not None and module.running_var is not None
    per_output_channel = isinstance(conv, nn.Conv3d) or getattr(conv, "groups", 1) == 1
    return tracked and per_output_channel


def _folded(conv: nn.Conv3d | nn.ConvTranspose3d, norm: nn.BatchNorm3d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`conv`'s weight and bias with `norm` (eval mode) folded in, computed in float64."""
    weight = conv.weight.detach().double()
    out_ch = conv.out_channels
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(out_ch, dtype=torch.float64)
    bias = bias.to(weight.device)
    if norm is not None:
        scale = norm.running_var.double().add(norm.eps).rsqrt()
        if norm.affine:
            scale = scale * norm.weight.detach().double()
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            shift = shift + norm.bias.detach().double()
        shape = [1] * weight.ndim
        shape[1 if isinstance(conv, nn.ConvTranspose3d) else 0] = out_ch
        weight = weight * scale.view(shape)
        bias = bias * scale + shift
    dtype = conv.weight.dtype
    return weight.to(dtype), bias.to(dtype)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution would run in here: autocast's on `x`'s device when it is on, else `x`'s."""
    device = x.device.type
    try:
        enabled, dtype = torch.is_autocast_enabled(device), torch.get_autocast_dtype(device)
    except (TypeError, RuntimeError):  # torch before 2.4, or a device autocast does not know
        enabled = torch.is_autocast_cpu_enabled() if device == "cpu" else torch.is_autocast_enabled()
        dtype = torch.get_autocast_cpu_dtype() if device == "cpu" else torch.get_autocast_gpu_dtype()
    return dtype if enabled else x.dtype


def _pointwise_ready(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused ops can run on `x` in `dtype` (the CPU, float32 or bfloat16)."""
    return x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and _pointwise_works()


@functools.lru_cache(maxsize=1)
def _pointwise_works() -> bool:
    """Whether oneDNN's fused convolution + ReLU and linear + ReLU exist in this torch and match the plain ops."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    conv, linear = (getattr(mkldnn, name, None) for name in ("_convolution_pointwise", "_linear_pointwise"))
    if conv is None or linear is None or not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 4, 4, 4, generator=generator)
    weight = torch.randn(5, 3, 3, 3, 3, generator=generator)
    bias = torch.randn(5, generator=generator)
    rows, matrix = torch.randn(7, 3, generator=generator), torch.randn(5, 3, generator=generator)
    try:
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            pairs = [
                (conv(x, weight, bias, [1, 1, 1], [1, 1, 1], [1, 1, 1], 1, "relu", [], ""),
                 F.relu(F.conv3d(x, weight, bias, padding=1))),
                (linear(rows, matrix, bias, "relu", [], ""), F.relu(F.linear(rows, matrix, bias))),
            ]  # fmt: skip
    except (RuntimeError, TypeError):
        return False
    return all(a.shape == b.shape and bool(torch.allclose(a, b, atol=1e-4, rtol=1e-4)) for a, b in pairs)
