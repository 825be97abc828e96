"""Transfer learning: freeze policies (CGAT, M3GNet, MEGNet), cyclic learning rate, ``finetune``."""

from __future__ import annotations

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
    "finetune",
    "keep_frozen_in_eval",
    "layerwise_param_groups",
    "model_blocks",
    "trainable_blocks",
    "triangular_multiplier",
    "unfreeze_next",
]
