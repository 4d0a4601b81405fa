"""An IS-Net ONNX graph (BatchNorm folded into its convs) -> our 3-channel :class:`ISNetDIS`.

Exporters fold each BatchNorm of an eval-mode IS-Net into the conv before it and give most weights
anonymous names (``onnx::Conv_1896``), so the graph's Conv nodes are matched to our ``nn.Conv2d``
modules by position: the k-th Conv of the graph (graph order, which is execution order) is the k-th
conv our forward calls (:func:`conv_execution_order`). Every pair must agree in weight and bias shape,
stride, padding, dilation and groups, and where a node's name spells a module path
(``/stage1/rebnconvin/conv_s1/Conv``, maybe under a wrapper's prefix) it must be the module's, or the
import stops with a :class:`CheckpointError`. Weights are read as fp32 (an fp16 graph's values, exactly).

The folded weights go into the convs and every ``bn_s1`` is set to the identity: weight 1, bias 0,
running mean 0 and running variance ``1 - eps`` (in fp32), so that ``var + eps`` is exactly 1 and an
eval-mode BatchNorm returns its input bit for bit (and :func:`dissam.model.inference.fold_bn` leaves
the conv's values unchanged). In training mode a BatchNorm normalises with batch statistics instead,
so a fine-tune starting from these weights does not see the original network's BatchNorm scales.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError
from .isnet import ISNetDIS, build_refiner
from .rsu import REBNCONV

STEM = "conv_in"
BASE_STEM_CHANNELS = 64  # conv_in's output channels at width 1.0
_NODE_PATH = re.compile(r"(/[A-Za-z_][A-Za-z0-9_]*)+/Conv(_\d+)?")


@dataclass(frozen=True)
class OnnxConv:
    """One Conv node of the graph: its name ('' when anonymous), fp32 weight ``[out, in, kh, kw]``,
    fp32 bias ``[out]`` (None when absent) and its attributes as our ``nn.Conv2d`` spells them."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def module_path(self) -> str | None:
        """``stage1.rebnconvin.conv_s1`` for a node named ``/stage1/rebnconvin/conv_s1/Conv``, else None."""
        if not _NODE_PATH.fullmatch(self.name):
            return None
        return ".".join(self.name.split("/")[1:-1])


def _require_onnx() -> Any:
    from .onnx_export import require

    return require("onnx")


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Every tensor the graph holds as data: initializers, Constant nodes' values, and Casts of either
    (an fp16 graph may cast its fp16 weights to fp32 before a conv), all as numpy arrays."""
    onnx = _require_onnx()
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Cast" and node.input[0] in values:
            to = onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "to"))
            values[node.output[0]] = values[node.input[0]].astype(onnx.helper.tensor_dtype_to_np_dtype(to))
    return values


def onnx_convs(model: Any) -> list[OnnxConv]:
    """The Conv nodes of an ``onnx.ModelProto`` in graph order, weights as fp32 numpy arrays."""
    onnx = _require_onnx()
    graph = model.graph
    values = _constants(graph)
    convs = []
    for index, node in enumerate(n for n in graph.node if n.op_type == "Conv"):
        label = node.name or f"Conv #{index}"
        if len(node.input) < 2 or node.input[1] not in values:
            raise CheckpointError(f"ONNX {label}: its weight {node.input[1] if len(node.input) > 1 else None!r} "
                                  "is not a constant of the graph")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        weight = values[node.input[1]].astype(np.float32)
        has_bias = len(node.input) > 2 and node.input[2] != ""
        if has_bias and node.input[2] not in values:
            raise CheckpointError(f"ONNX {label}: its bias {node.input[2]!r} is not a constant of the graph")
        pads = list(attrs.get("pads", [0] * 4))
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or pads[:2] != pads[2:]:
            raise CheckpointError(f"ONNX {label}: asymmetric or automatic padding ({pads}, "
                                  f"auto_pad {attrs.get('auto_pad')!r}) has no nn.Conv2d equivalent")
        convs.append(OnnxConv(node.name, weight, values[node.input[2]].astype(np.float32) if has_bias else None,
                              tuple(attrs.get("strides", (1, 1))), (int(pads[0]), int(pads[1])),
                              tuple(attrs.get("dilations", (1, 1))), int(attrs.get("group", 1))))
    return convs


def conv_execution_order(model: nn.Module, size: int = 64) -> list[str]:
    """Names of ``model``'s ``nn.Conv2d`` modules in the order its forward calls them, each once
    (found by running the forward on a ``size`` x ``size`` zero image with hooks; weights untouched)."""
    names = {module: name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    in_ch = next(iter(names)).in_channels
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda mod, _inp: order.append(names[mod])) for m in names]
    was_training = model.training
    try:
        with torch.inference_mode():
            model.eval()(torch.zeros(1, in_ch, size, size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return list(dict.fromkeys(order))


def identity_batchnorms(model: nn.Module) -> nn.Module:
    """In place: every REBNCONV's ``bn_s1`` becomes an exact identity in eval mode (weight 1, bias 0,
    running mean 0, running variance ``1 - eps`` so that ``var + eps`` is 1.0 in fp32)."""
    for module in model.modules():
        if isinstance(module, REBNCONV) and isinstance(module.bn_s1, nn.BatchNorm2d):
            bn = module.bn_s1
            with torch.no_grad():
                bn.weight.fill_(1.0)
                bn.bias.zero_()
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
                bn.num_batches_tracked.zero_()
    return model


def has_identity_batchnorms(model: nn.Module) -> bool:
    """Whether every REBNCONV's BatchNorm is the exact identity :func:`identity_batchnorms` writes: the
    mark of a converted checkpoint whose BatchNorms were folded into its convolutions (a freshly built
    network's running variance is 1, not ``1 - eps``)."""
    norms = [m.bn_s1 for m in model.modules() if isinstance(m, REBNCONV) and isinstance(m.bn_s1, nn.BatchNorm2d)]
    return bool(norms) and all(
        bool((bn.weight == 1).all() and (bn.bias == 0).all() and (bn.running_mean == 0).all()
             and (bn.running_var == torch.tensor(1.0 - bn.eps, dtype=bn.running_var.dtype)).all())
        for bn in norms)


def _check_pair(conv: OnnxConv, name: str, module: nn.Conv2d, index: int) -> None:
    label = f"ONNX Conv #{index} ({conv.name or 'anonymous'})"
    path = conv.module_path  # an exporter may prefix a wrapper's attribute name (``/m/conv_in/Conv``)
    if path is not None and path != name and not path.endswith("." + name):
        raise CheckpointError(f"{label} is named for {path!r} but falls on our {name!r} in "
                              "execution order: the graph is not IS-Net's layout")
    found = (tuple(conv.weight.shape), None if conv.bias is None else tuple(conv.bias.shape),
             tuple(conv.stride), tuple(conv.padding), tuple(conv.dilation), conv.groups)
    want = (tuple(module.weight.shape), None if module.bias is None else tuple(module.bias.shape),
            tuple(module.stride), tuple(module.padding), tuple(module.dilation), module.groups)
    if found != want:
        fields = ("weight", "bias", "stride", "padding", "dilation", "groups")
        diff = next(i for i in range(len(fields)) if found[i] != want[i])
        raise CheckpointError(f"{label} does not fit our {name!r}: {fields[diff]} {found[diff]}, "
                              f"expected {want[diff]}")


def isnet_from_convs(convs: list[OnnxConv]) -> ISNetDIS:
    """Our ``ISNetDIS`` (eval mode) holding the graph's conv weights, BatchNorms the identity. Input
    channels and width are read from the stem (``conv_in``: ``[64 * width, in_ch, 3, 3]``)."""
    if not convs:
        raise CheckpointError("the ONNX graph has no Conv node: not an IS-Net")
    stem = convs[0].weight
    model = build_refiner(in_ch=int(stem.shape[1]), width=stem.shape[0] / BASE_STEM_CHANNELS).eval()
    order = conv_execution_order(model)
    if len(order) != len(convs):
        raise CheckpointError(f"the ONNX graph has {len(convs)} Conv nodes, our ISNetDIS(in_ch={stem.shape[1]}, "
                              f"width={stem.shape[0] / BASE_STEM_CHANNELS:g}) calls {len(order)} convs")
    modules = dict(model.named_modules())
    for index, (conv, name) in enumerate(zip(convs, order, strict=True)):
        _check_pair(conv, name, modules[name], index)
    with torch.no_grad():
        for conv, name in zip(convs, order, strict=True):
            modules[name].weight.copy_(torch.from_numpy(conv.weight))
            if conv.bias is not None:
                modules[name].bias.copy_(torch.from_numpy(conv.bias))
    return identity_batchnorms(model).eval()


def isnet_from_onnx(data: bytes | Any) -> ISNetDIS:
    """An IS-Net ONNX model (serialised bytes or an ``onnx.ModelProto``) -> our ``ISNetDIS``; see the
    module docstring for how convs are matched. CheckpointError when the graph does not fit."""
    onnx = _require_onnx()
    if isinstance(data, (bytes, bytearray)):
        try:
            data = onnx.load_from_string(bytes(data))
        except Exception as exc:  # protobuf's DecodeError and friends
            raise CheckpointError(f"cannot parse the ONNX model ({type(exc).__name__}: {exc})") from exc
    return isnet_from_convs(onnx_convs(data))
