"""Layers from the course's equations: BatchNorm, Dense (He/Xavier, L2 cost), InvertedDropout.

Stack them per hidden layer as `Dense(use_bias=False) -> BatchNorm -> activation ->
InvertedDropout` (BatchNorm's β replaces the Dense bias; docs/methods.md §10).
"""

from tfnet.layers.batch_norm import BatchNorm
from tfnet.layers.dense import INITIALIZERS, Dense, kernel_initializer
from tfnet.layers.dropout import InvertedDropout

__all__ = ["BatchNorm", "Dense", "INITIALIZERS", "InvertedDropout", "kernel_initializer"]
