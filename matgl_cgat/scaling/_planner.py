"""Budget planning: is extra compute better spent on cheap (pre-training) or expensive (training) labels?

Two fitted curves describe a transfer-learning setup at its current point (``n_pretrain`` cheap,
``n_train`` expensive structures): the error against pre-training size (expensive set held fixed)
and against training size (pre-training set held fixed). Extra compute ``B``, counted in cheap
calculations, buys either ``B`` more cheap structures or ``B / cost_ratio`` more expensive ones
(e.g. SCAN = 5 x PBE). Each curve predicts the error of its option, as in Fig. 5 of Hoffmann et al.
Each curve moves one size while the other stays put, so the plan is a local, one-step-at-a-time
estimate; both curves should agree at the current point, and the report shows how well they do.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._fit import PowerLawFit


@dataclass
class BudgetPlan:
    rows: list[dict]
    mae_now_pretrain_curve: float
    mae_now_train_curve: float
    cost_ratio: float

    def to_dict(self) -> dict:
        return {"cost_ratio": self.cost_ratio, "mae_now_pretrain_curve": self.mae_now_pretrain_curve,
                "mae_now_train_curve": self.mae_now_train_curve, "rows": self.rows}

    def table(self) -> str:
        lines = [f"current point: MAE {self.mae_now_pretrain_curve:.4g} (pre-training curve), "
                 f"{self.mae_now_train_curve:.4g} (training curve); expensive = {self.cost_ratio:g} x cheap",
                 f"{'extra budget':>12s} {'+cheap':>9s} {'MAE cheap':>10s} {'+expensive':>10s} {'MAE expensive':>13s}"
                 f"  better"]
        for r in self.rows:
            lines.append(f"{r['budget']:12.0f} {r['extra_cheap']:9.0f} {r['mae_cheap']:10.4g} "
                         f"{r['extra_expensive']:10.0f} {r['mae_expensive']:13.4g}  {r['better']}")
        return "\n".join(lines)


def plan_budget(pretrain_fit: PowerLawFit | None, train_fit: PowerLawFit, n_pretrain: float, n_train: float,
                cost_ratio: float, budgets) -> BudgetPlan:
    """Predicted error after spending each extra budget on cheap or on expensive calculations.

    Args:
        pretrain_fit: MAE against pre-training-set size (None: cheap data is not an option; only the
            expensive column is filled).
        train_fit: MAE against training-set size (the expensive functional).
        n_pretrain, n_train: the current sizes.
        cost_ratio: cost of one expensive calculation in units of one cheap one (> 0).
        budgets: extra compute, in cheap-calculation units.
    """
    if cost_ratio <= 0:
        raise ValueError(f"cost_ratio must be positive, got {cost_ratio}")
    if n_train <= 0 or (pretrain_fit is not None and n_pretrain <= 0):
        raise ValueError("current sizes must be positive")
    rows = []
    for budget in budgets:
        if budget < 0:
            raise ValueError(f"budgets must be non-negative, got {budget}")
        extra_exp = budget / cost_ratio
        mae_exp = float(train_fit.predict(n_train + extra_exp))
        mae_cheap = float(pretrain_fit.predict(n_pretrain + budget)) if pretrain_fit is not None else float("nan")
        better = "expensive" if pretrain_fit is None or mae_exp < mae_cheap else "cheap"
        if pretrain_fit is not None and abs(mae_exp - mae_cheap) <= 1e-12 * max(mae_exp, 1.0):
            better = "either"
        rows.append({"budget": float(budget), "extra_cheap": float(budget), "mae_cheap": mae_cheap,
                     "extra_expensive": float(extra_exp), "mae_expensive": mae_exp, "better": better})
    now_pre = float(pretrain_fit.predict(n_pretrain)) if pretrain_fit is not None else float("nan")
    return BudgetPlan(rows=rows, mae_now_pretrain_curve=now_pre, mae_now_train_curve=float(train_fit.predict(n_train)),
                      cost_ratio=float(cost_ratio))
