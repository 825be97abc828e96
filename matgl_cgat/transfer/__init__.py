"""Transfer learning on top of :mod:`matgl_cgat.training`: freeze policies (blocks declared by CGAT,
adapters for MatGL's M3GNet and MEGNet), ``finetune`` (copy, renormalise, freeze, fit) and a
validation-fitted output offset (``calibrate_offset``)."""

from __future__ import annotations

from ._calibrate import best_output_shift, calibrate_offset
from ._fidelity import add_fidelity, multi_fidelity_from
from ._finetune import FINETUNE_RECIPE, finetune
from ._policies import (
    POLICIES,
    PolicyReport,
    apply_policy,
    keep_frozen_in_eval,
    layerwise_param_groups,
    model_blocks,
    trainable_blocks,
    unfreeze_next,
)

__all__ = [
    "FINETUNE_RECIPE",
    "POLICIES",
    "PolicyReport",
    "add_fidelity",
    "apply_policy",
    "best_output_shift",
    "calibrate_offset",
    "finetune",
    "keep_frozen_in_eval",
    "layerwise_param_groups",
    "model_blocks",
    "multi_fidelity_from",
    "trainable_blocks",
    "unfreeze_next",
]
