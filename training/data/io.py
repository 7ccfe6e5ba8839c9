"""Image input for training: read MR images and the labelled dataset layouts users bring.

The public face of four small modules: :mod:`.readers` (formats, :func:`read_slices`,
:func:`read_many`), :mod:`.dicom_reader`, :mod:`.label_sheet` and :mod:`.labelled`
(:func:`load_labelled_dataset`). Imports no ``app`` code and reads no environment variables.
"""

from .image_types import Slice, UnreadableImage
from .labelled import DatasetSummary, LabelledDataset, LabelledItem, load_labelled_dataset
from .readers import ReadReport, count_slices, iter_image_files, read_many, read_slices

__all__ = [
    "DatasetSummary",
    "LabelledDataset",
    "LabelledItem",
    "ReadReport",
    "Slice",
    "UnreadableImage",
    "count_slices",
    "iter_image_files",
    "load_labelled_dataset",
    "read_many",
    "read_slices",
]
