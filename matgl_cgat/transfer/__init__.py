"""Transfer learning: freeze policies (CGAT, M3GNet, MEGNet), cyclic learning rate, ``finetune``,
and a validation-fitted output offset (``calibrate_offset``)."""

from __future__ import annotations

from ._calibrate import best_output_shift, calibrate_offset
from ._finetune import DEFAULTS, CGATLightning, finetune
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
from ._schedule import triangular_multiplier

__all__ = [
    "DEFAULTS",
    "POLICIES",
    "CGATLightning",
    "PolicyReport",
    "apply_policy",
    "best_output_shift",
    "calibrate_offset",
    "finetune",
    "keep_frozen_in_eval",
    "layerwise_param_groups",
    "model_blocks",
    "trainable_blocks",
    "triangular_multiplier",
    "unfreeze_next",
]
