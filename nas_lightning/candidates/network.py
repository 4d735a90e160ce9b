"""The NAS-Bench-201 network of one cell, built as NAS-Bench-201 builds it.

Macro structure (``TinyNetwork`` of NAS-Bench-201): a 3x3 stem convolution with batch norm;
three stages of ``N`` cells with ``C``, ``2C`` and ``4C`` channels, joined by ResNet basic blocks
of stride 2 that double the channels; batch norm and ReLU; global average pooling; a linear
classifier. A cell has four nodes; node ``j`` sums its incoming edges ``i -> j`` (``i < j``),
in the edge order ``(0->1), (0->2), (1->2), (0->3), (1->3), (2->3)``; the cell's output is
node 3. Ops: ``none`` (zeros), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3``
(ReLU-Conv-BN, conv without bias), ``avg_pool_3x3`` (stride 1, padding excluded from the mean).

The parameter count (:func:`count_params`) counts trainable parameters, batch-norm weights and
biases included and running statistics excluded, in millions: the ``params`` of the NB201 tables.
"""

from __future__ import annotations

import torch
from torch import nn

from nas_lightning.errors import UserError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_NODES = 4


def validate_ops(ops: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The cell as a tuple of six known op names.

    Raises:
        UserError: for a wrong length or an unknown op name.
    """
    if isinstance(ops, str):
        raise UserError(f"a cell is a tuple of {len(EDGES)} op names, not the string {ops!r}; use parse_arch() for NB201 strings")
    ops = tuple(ops)
    if len(ops) != len(EDGES):
        raise UserError(f"a cell has {len(EDGES)} edges, got {len(ops)} ops {ops!r}; give one op per edge")
    for op in ops:
        if op not in OPS:
            raise UserError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")
    return ops


def arch_string(ops: tuple[str, ...]) -> str:
    """The NB201 string of a cell, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
    ops = validate_ops(ops)
    nodes = []
    for dst in range(1, NUM_NODES):
        parts = [f"{ops[e]}~{src}" for e, (src, d) in enumerate(EDGES) if d == dst]
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


_SHORT_OPS = (("nor_conv_1x1", "conv1x1"), ("nor_conv_3x3", "conv3x3"), ("avg_pool_3x3", "pool3x3"), ("skip_connect", "skip"))


def arch_label(ops: tuple[str, ...]) -> str:
    """A cell as a short, filesystem-safe name: each node's incoming ``op~source``, nodes joined
    by ``+``, e.g. ``conv3x3~0+none~0,skip~1+conv1x1~0,pool3x3~1,none~2`` (the NB201 string's order)."""
    label = arch_string(ops).replace("|+|", "+").strip("|").replace("|", ",")
    for long, short in _SHORT_OPS:
        label = label.replace(long, short)
    return label


def parse_arch(arch: str) -> tuple[str, ...]:
    """The op tuple of an NB201 string (inverse of :func:`arch_string`).

    Raises:
        UserError: for a string that is not an NB201 cell.
    """
    found: dict[tuple[int, int], str] = {}
    try:
        for dst, node in enumerate(arch.strip().split("+"), start=1):
            for part in node.strip("|").split("|"):
                op, src = part.split("~")
                found[(int(src), dst)] = op
    except ValueError:
        found = {}
    if set(found) != set(EDGES):
        raise UserError(f"{arch!r} is not an NB201 cell string; write it like |nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    return validate_ops(tuple(found[e] for e in EDGES))


def is_connected(ops: tuple[str, ...]) -> bool:
    """Whether some path of non-``none`` edges leads from node 0 to node 3 (else the cell outputs zeros)."""
    ops = validate_ops(ops)
    reached = {0}
    for e, (src, dst) in enumerate(EDGES):  # edges are in topological order
        if ops[e] != "none" and src in reached:
            reached.add(dst)
    return NUM_NODES - 1 in reached


class ReLUConvBN(nn.Sequential):
    """ReLU, a bias-free convolution, batch norm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the input (``x * 0``, so NaN/Inf stay visible)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    """One cell op on ``channels`` channels at stride 1 (cells never change shape in NB201)."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise UserError(f"unknown op {name!r}; choose one of {', '.join(OPS)}")


class ResNetBasicBlock(nn.Module):
    """The reduction block between stages: two ReLU-Conv-BN 3x3 and an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Cell(nn.Module):
    """One NB201 cell: node ``j`` is the sum of ``op(node_i)`` over its incoming edges."""

    def __init__(self, ops: tuple[str, ...], channels: int) -> None:
        super().__init__()
        self.ops = validate_ops(ops)
        self.edges = nn.ModuleList(make_op(op, channels) for op in self.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in range(1, NUM_NODES):
            nodes.append(sum(self.edges[e](nodes[src]) for e, (src, d) in enumerate(EDGES) if d == dst))
        return nodes[-1]


class NB201Network(nn.Module):
    """The NAS-Bench-201 ``TinyNetwork`` of one cell; ``forward`` returns logits."""

    def __init__(self, ops: tuple[str, ...], C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.ops = validate_ops(ops)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage:
                cells.append(ResNetBasicBlock(c_prev, c, 2))
            cells.extend(Cell(self.ops, c) for _ in range(N))
            c_prev = c
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lastact(self.cells(self.stem(x)))
        return self.classifier(self.global_pooling(out).flatten(1))


def _check_sizes(C: int, N: int, num_classes: int, in_channels: int) -> None:
    for name, value, low in (("C", C, 1), ("N", N, 0), ("num_classes", num_classes, 1), ("in_channels", in_channels, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f"network size {name}={value!r} is invalid; give an integer >= {low}")


def build_network(ops: tuple[str, ...], C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """The NB201 network of the cell ``ops`` (six op names in edge order).

    Raises:
        UserError: for a malformed cell or a non-positive size.
    """
    _check_sizes(C, N, num_classes, in_channels)
    return NB201Network(validate_ops(ops), C=C, N=N, num_classes=num_classes, in_channels=in_channels)


def count_params(model: nn.Module) -> float:
    """Trainable parameters in millions (batch-norm affine included, buffers excluded), as NB201 counts."""
    return sum(p.numel() for p in model.parameters()) / 1e6


_CONV_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def analytic_params(ops: tuple[str, ...], C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3) -> float:
    """:func:`count_params` of :func:`build_network` without building it (millions)."""
    _check_sizes(C, N, num_classes, in_channels)
    ops = validate_ops(ops)
    total = in_channels * C * 9 + 2 * C  # stem conv + BN
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        if stage:
            c_in = c // 2
            total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c + c_in * c  # conv_a, conv_b, shortcut
        per_cell = sum(_CONV_KERNEL[op] ** 2 * c * c + 2 * c for op in ops if op in _CONV_KERNEL)
        total += N * per_cell
    total += 2 * 4 * C + 4 * C * num_classes + num_classes  # lastact BN, classifier
    return total / 1e6
