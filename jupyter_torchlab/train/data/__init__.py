"""CIFAR-10 for the tutorial: the real data when here or downloadable, else a labelled stand-in.

:mod:`.load` decides what to load and loads it, :mod:`.standin` writes the offline stand-in in
CIFAR-10's own format, :mod:`.files` knows the folder's files and checksums.
"""

from .files import CIFAR10_CLASSES, DatasetError
from .load import CIFAR10Data, InMemoryDataset, cifar10
from .standin import StandInCIFAR10, write_standin

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10Data",
    "DatasetError",
    "InMemoryDataset",
    "StandInCIFAR10",
    "cifar10",
    "write_standin",
]
