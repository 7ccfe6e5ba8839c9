"""The paper's experiments and what they publish: the ablation and baseline sweeps
(:mod:`.sweeps`) and their tables and plots (:mod:`.report`), the fused detector's experiment
behind ``amaqc train-fusion`` (:mod:`.fusion_experiment`) and its model-card section
(:mod:`.fusion_report`), the served checkpoint's model card (:mod:`.model_card`), and the int8
export behind ``amaqc quantize``, accepted only by issue 18's rule (:mod:`.quantize`).
"""

from .fusion_experiment import EVAL_SPLITS, run_fusion_experiment
from .fusion_report import write_fusion_section
from .quantize import run_quantisation
from .report import write_report
from .sweeps import DICE_WEIGHTS, SweepSettings, run_ablation, run_compare

__all__ = [
    "DICE_WEIGHTS",
    "EVAL_SPLITS",
    "SweepSettings",
    "run_ablation",
    "run_compare",
    "run_fusion_experiment",
    "run_quantisation",
    "write_fusion_section",
    "write_report",
]
