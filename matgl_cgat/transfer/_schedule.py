"""The reference's triangular cyclical learning rate, stepped once per epoch."""

from __future__ import annotations


def triangular_multiplier(epoch: int, period: int, low: float = 0.1) -> float:
    """Learning-rate multiplier: ``low`` -> 1 -> ``low`` linearly over ``period`` epochs, repeating.

    Epoch 0 starts at ``low``; the peak (1.0) is at ``period / 2``.
    """
    if period < 1:
        raise ValueError(f"period must be >= 1 epoch, got {period}")
    phase = (epoch % period) / period  # 0 .. 1
    return low + (1.0 - low) * (1.0 - abs(2.0 * phase - 1.0))
