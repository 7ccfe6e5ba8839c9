"""Real MR images in: read any file people have (DICOM, PNG, JPEG, NIfTI, ``.npy``), load the
labelled layouts they bring, fetch the public sources, cut volumes into display-oriented slices,
hold labelled samples and splits, and build the base dataset split by subject.

Torch-free: the API process decodes every upload with :func:`read_slices`.
"""

from .build import MANIFEST_COLUMNS, build_dataset
from .image_types import Slice, UnreadableImage
from .labelled import DatasetSummary, LabelledDataset, LabelledItem, load_labelled_dataset
from .readers import ReadReport, count_slices, iter_image_files, read_many, read_slices
from .samples import Sample, describe, load_samples, load_split
from .slices import slices_from_path, to_uint16
from .sources import SOURCES, SourceError, fetch_sources

__all__ = [
    "MANIFEST_COLUMNS",
    "SOURCES",
    "DatasetSummary",
    "LabelledDataset",
    "LabelledItem",
    "ReadReport",
    "Sample",
    "Slice",
    "SourceError",
    "UnreadableImage",
    "build_dataset",
    "count_slices",
    "describe",
    "fetch_sources",
    "iter_image_files",
    "load_labelled_dataset",
    "load_samples",
    "load_split",
    "read_many",
    "read_slices",
    "slices_from_path",
    "to_uint16",
]
