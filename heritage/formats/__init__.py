"""Readers that turn a checkpoint into tensors, safely and without reading more than needed."""

from heritage.errors import BadCheckpoint, CheckpointError, UnsafePickle
from heritage.formats.checkpoint import Checkpoint, RowSample, TensorInfo
from heritage.formats.dtypes import DTYPES, to_float32
from heritage.formats.open import WEIGHT_SUFFIXES, open_checkpoint, weight_files
from heritage.formats.source import ByteSource, LocalFileSource, ReadStats

__all__ = [
    "DTYPES",
    "WEIGHT_SUFFIXES",
    "BadCheckpoint",
    "ByteSource",
    "Checkpoint",
    "CheckpointError",
    "LocalFileSource",
    "ReadStats",
    "RowSample",
    "TensorInfo",
    "UnsafePickle",
    "open_checkpoint",
    "to_float32",
    "weight_files",
]
