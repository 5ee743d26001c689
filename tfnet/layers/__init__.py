"""Layers from the course's equations: BatchNorm, Dense and Conv2D (He/Xavier, L2 cost),
InvertedDropout.

Stack them per hidden layer as `Dense(use_bias=False) -> BatchNorm -> activation ->
InvertedDropout` (BatchNorm's β replaces the Dense bias; docs/methods.md §10), or
`Conv2D(use_bias=False) -> BatchNorm -> activation` on NHWC images (BatchNorm's default axis -1
normalises each channel over N, H, W).
"""

from tfnet.layers.batch_norm import BatchNorm
from tfnet.layers.conv2d import Conv2D
from tfnet.layers.dense import Dense
from tfnet.layers.dropout import InvertedDropout
from tfnet.layers.kernel import INITIALIZERS, L2Kernel, kernel_initializer

__all__ = [
    "BatchNorm", "Conv2D", "Dense", "INITIALIZERS", "InvertedDropout", "L2Kernel",
    "kernel_initializer",
]
