"""Export a checkpoint's network to ONNX for the CPU inference backend (:mod:`model.backends`).

The graph exported is not the training module verbatim but an *inference rewrite* of it that
computes the same function with less work on the served patch size (all rewrites are exact in
real arithmetic; the tests bound the float difference):

- **Small-map convolutions as one matrix product.** On 64-px patches layer4 runs on 2x2 maps,
  where a padded 3x3 convolution spends 5 of its 9 taps on zeros and the CPU kernels, built for
  wide maps, run at a third of their speed. When every output pixel of a stride-1 convolution
  sees the whole input map, the convolution *is* a dense linear map from the (C_in * H * W)
  input to the (C_out * H * W) output: :class:`DenseConvBN` builds that matrix once (by
  convolving the identity basis), folds the BatchNorm that follows into it, and runs one GEMM
  over all patches — 2.25x fewer multiply-adds at 2x2 and a kernel that runs at full speed.
- **Global average pools as ``GlobalAveragePool``** (SE squeeze, pyramid pooling) instead of
  ``ReduceMean``: ONNX Runtime keeps its blocked (NCHWc) layout across the former, while every
  ``ReduceMean`` forces a layout conversion and back in each block.
- **Nearest 2x upsampling by a constant scale** in the pyramid where the levels are exact
  halvings, so the top-down pass needs no shape arithmetic at run time.
- **Softmax and the artifact class inside the graph**: the runtime returns the (N,) patch
  probabilities the Predictor aggregates.

Only the batch axis is dynamic: the patch size is fixed by the checkpoint.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .pyramid import PyramidFusion
from .resnet import AMAResNet, BasicBlock
from .se import SqueezeExcitation

#: Bumped whenever the rewrite or the export options change, so cached exports are rebuilt.
EXPORT_VERSION = 1
OPSET = 17
INPUT_NAME = "patches"
OUTPUT_NAME = "probability"


class DenseConvBN(nn.Module):
    """A stride-1 ``Conv2d`` + ``BatchNorm2d`` (eval) on a fixed (C, H, W) input, as one matrix.

    Valid only where each output pixel's receptive field covers the whole input map (checked by
    :func:`_covers_whole_map`); then ``y = flatten(x) @ M + b`` where ``M`` holds, for every
    (input pixel, output pixel) pair, the kernel tap that joins them, scaled by the BatchNorm's
    per-channel gain.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, in_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, w = in_shape
        if conv.in_channels != c:
            raise ValueError(f"conv expects {conv.in_channels} channels, input has {c}")
        (kh, kw), (ph, pw) = conv.kernel_size, _padding(conv)
        co, ho, wo = conv.out_channels, h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
        with torch.no_grad():
            weight = conv.weight.detach().double()
            # M[(ci, a, b), (co, i, j)] = weight[co, ci, a - i + ph, b - j + pw] (tap in range)
            dense = torch.zeros(c, h, w, co, ho, wo, dtype=torch.float64)
            for a in range(h):
                for b in range(w):
                    for i in range(ho):
                        for j in range(wo):
                            ky, kx = a - i + ph, b - j + pw
                            if 0 <= ky < kh and 0 <= kx < kw:
                                dense[:, a, b, :, i, j] = weight[:, :, ky, kx].T
            var = bn.running_var if bn.running_var is not None else torch.ones(co)
            mean = bn.running_mean if bn.running_mean is not None else torch.zeros(co)
            gamma = bn.weight if bn.weight is not None else torch.ones(co)
            beta = bn.bias if bn.bias is not None else torch.zeros(co)
            scale = gamma.double() / torch.sqrt(var.double() + bn.eps)
            shift = beta.double() - mean.double() * scale
            if conv.bias is not None:
                shift = shift + conv.bias.double() * scale
            matrix = dense.reshape(c * h * w, co * ho * wo) * scale.repeat_interleave(ho * wo)
            bias = shift.repeat_interleave(ho * wo)
        self.out_shape = (int(co), int(ho), int(wo))
        self.register_buffer("matrix", matrix.float().contiguous())
        self.register_buffer("bias", bias.float())

        self.matrix: torch.Tensor
        self.bias: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.addmm(self.bias, x.flatten(1), self.matrix)
        return y.reshape(-1, *self.out_shape)


class _PooledSE(nn.Module):
    """:class:`model.se.SqueezeExcitation` with the squeeze as a global average pool."""

    def __init__(self, se: SqueezeExcitation) -> None:
        super().__init__()
        self.se = se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.se.fc2(self.se.relu(self.se.fc1(gate))))


class _PooledPyramid(nn.Module):
    """:class:`model.pyramid.PyramidFusion` for fixed level sizes: constant-scale upsampling
    where a level is exactly twice the next, global average pools."""

    def __init__(self, pyramid: PyramidFusion, sizes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.pyramid = pyramid
        self.sizes = sizes

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        p = self.pyramid
        laterals = [conv(f) for conv, f in zip(p.lateral, features, strict=True)]
        merged = [laterals[-1]]
        for i in range(len(laterals) - 2, -1, -1):
            (h, w), (hc, wc) = self.sizes[i], self.sizes[i + 1]
            if (h, w) == (2 * hc, 2 * wc):
                top = F.interpolate(merged[0], scale_factor=2.0, mode="nearest")
            else:
                top = F.interpolate(merged[0], size=(h, w), mode="nearest")
            merged.insert(0, laterals[i] + top)
        pooled = [
            F.adaptive_avg_pool2d(smooth(m), 1).flatten(1)
            for smooth, m in zip(p.smooth, merged, strict=True)
        ]
        return pooled


class InferenceNetwork(nn.Module):
    """(N, C, p, p) patches -> (N,) artifact probabilities: the rewrite described above of an
    :class:`model.resnet.AMAResNet` in eval mode, for one fixed patch size ``p``."""

    def __init__(self, network: AMAResNet, patch_size: int) -> None:
        super().__init__()
        if not isinstance(network, AMAResNet):
            raise TypeError(f"can only rewrite an AMAResNet, got {type(network).__name__}")
        net = copy.deepcopy(network).cpu().float().eval()
        shapes, stage_sizes = _shapes(net, patch_size)
        for name, block in net.named_modules():
            if not isinstance(block, BasicBlock):
                continue
            for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2")):
                conv, bn = getattr(block, conv_name), getattr(block, bn_name)
                in_shape = shapes[f"{name}.{conv_name}"]
                if isinstance(bn, nn.BatchNorm2d) and _covers_whole_map(conv, in_shape):
                    setattr(block, conv_name, DenseConvBN(conv, bn, in_shape))
                    setattr(block, bn_name, nn.Identity())
            if isinstance(block.se, SqueezeExcitation):
                block.se = _PooledSE(block.se)
        self.net = net
        self.pyramid = _PooledPyramid(net.pyramid, stage_sizes) if net.pyramid is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.net.stages(x)
        if self.pyramid is not None:
            features = torch.cat(self.pyramid(levels), dim=1)
        else:
            features = F.adaptive_avg_pool2d(levels[-1], 1).flatten(1)
        logits = self.net.fc(features)
        return torch.softmax(logits, dim=1)[:, 1]


def _shapes(
    net: AMAResNet, patch_size: int
) -> tuple[dict[str, tuple[int, int, int]], list[tuple[int, int]]]:
    """The (C, H, W) input of every Conv2d of ``net`` on one ``patch_size`` patch, by module
    name, and the (H, W) of layer1..layer4's outputs."""
    shapes: dict[str, tuple[int, int, int]] = {}
    sizes: list[tuple[int, int]] = []
    hooks = []

    def record(n: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], object], None]:
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], _o: object) -> None:
            c, h, w = args[0].shape[1:]
            shapes[n] = (int(c), int(h), int(w))

        return hook

    def record_stage(_m: nn.Module, _a: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        sizes.append((int(out.shape[-2]), int(out.shape[-1])))

    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(record(name)))
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        hooks.append(stage.register_forward_hook(record_stage))
    try:
        with torch.no_grad():
            net.stages(torch.zeros(1, input_channels(net), patch_size, patch_size))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes, sizes


def input_channels(network: AMAResNet) -> int:
    """Image channels the network reads (its stem convolution's inputs)."""
    conv = network.stem[0]
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"expected the stem to start with a Conv2d, got {type(conv).__name__}")
    return conv.in_channels


def _padding(conv: nn.Conv2d) -> tuple[int, int]:
    if isinstance(conv.padding, str):
        raise ValueError(f"string padding {conv.padding!r} is not supported here")
    return int(conv.padding[0]), int(conv.padding[1])


def _covers_whole_map(conv: nn.Conv2d, in_shape: tuple[int, int, int]) -> bool:
    """True when a stride-1 conv's every output pixel reads every input pixel (so the dense
    matrix has no structural zeros and costs no more than the convolution's valid taps)."""
    _, h, w = in_shape
    if isinstance(conv.padding, str) or conv.stride != (1, 1) or conv.dilation != (1, 1):
        return False
    (kh, kw), (ph, pw) = conv.kernel_size, _padding(conv)
    if conv.groups != 1:
        return False
    # output o reads inputs o - pad .. o - pad + k - 1: the first output must reach the last
    # input, and the last output (index size + 2 pad - k) must still read input 0
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    return kh - 1 - ph >= h - 1 and ho - 1 <= ph and kw - 1 - pw >= w - 1 and wo - 1 <= pw


def export_onnx(network: AMAResNet, patch_size: int, path: str | Path | None = None) -> bytes:
    """Export the inference rewrite of ``network`` for ``patch_size`` patches as ONNX.

    Input ``patches`` (N, C, p, p) float32, output ``probability`` (N,) float32; N is dynamic.
    Writes ``path`` atomically when given; returns the serialised model either way. Needs the
    ``onnx`` package (torch's exporter serialises through it).
    """
    rewritten = InferenceNetwork(network, patch_size).eval()
    example = torch.zeros(2, input_channels(network), patch_size, patch_size)
    return export_module(rewritten, example, INPUT_NAME, OUTPUT_NAME, "patches", path)


def export_module(
    module: nn.Module,
    example: torch.Tensor,
    input_name: str,
    output_name: str,
    batch_axis: str,
    path: str | Path | None = None,
) -> bytes:
    """``module`` (eval mode, one input, one output) exported as ONNX with this module's opset
    and only the batch axis dynamic. Writes ``path`` atomically when given; returns the
    serialised model either way. Needs the ``onnx`` package."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # torch announces the TorchScript exporter's deprecation on every call
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # a file object works, as torch documents
            dynamo=False,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: batch_axis}, output_name: {0: batch_axis}},
            opset_version=OPSET,
        )
    data = buffer.getvalue()
    if path is not None:
        write_atomic(path, data)
    return data


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename, so a reader
    of the export cache sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{id(data)}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
