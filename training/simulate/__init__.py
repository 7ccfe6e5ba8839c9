"""Artifacts made on purpose, each a random parameter draw handed to a deterministic transform
(TorchIO's ``RandomMotion`` / ``Motion`` split), so every copy is reproducible and its
parameters are ground truth: k-space artifacts and motion (:mod:`.artifacts`, :mod:`.kspace`,
:mod:`.motion`; a new artifact kind goes there), the realism augmentation both classes get
(:mod:`.augment`), the foreign simulators for the cross-simulator splits (:mod:`.cross_sim`,
TorchIO; :mod:`.cross_sim_monai`, MONAI), the fixed evaluation pairs (:mod:`.evalset`), corrupted
copies of files (:mod:`.files`), and the splits ``amaqc data build`` writes
(:mod:`.dataset_build`, :mod:`.dataset_extra`).
"""

from .artifacts import KINDS, SEVERITIES, random_artifact, simulate
from .augment import apply_realism, realism_record, split_acquisition
from .cross_sim import cross_sim_pairs
from .cross_sim_monai import monai_sim_pairs
from .dataset_build import build_all
from .evalset import simulated_pairs
from .files import simulate_path, to_png16

__all__ = [
    "KINDS",
    "SEVERITIES",
    "apply_realism",
    "build_all",
    "cross_sim_pairs",
    "monai_sim_pairs",
    "random_artifact",
    "realism_record",
    "simulate",
    "simulate_path",
    "simulated_pairs",
    "split_acquisition",
    "to_png16",
]
