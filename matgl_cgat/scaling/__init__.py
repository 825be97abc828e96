"""How error falls with data: learning curves, log-log power-law fits, data budgets (Hoffmann et al. 2023).

- :func:`run_learning_curve` trains a grid of sizes x strategies x seeds, resumably;
- :func:`fit_power_law` fits MAE = a * N**(-b) with bootstrap uncertainties; :func:`data_equivalent_size`
  and :meth:`PowerLawFit.size_for` turn fits into numbers of structures;
- :func:`plan_budget` compares spending extra compute on cheap or on expensive calculations.
"""

from ._fit import PowerLawFit, data_equivalent_size, data_equivalents, fit_power_law
from ._planner import BudgetPlan, plan_budget
from ._runner import fit_results, load_results, results_csv, run_learning_curve, summarize

__all__ = [
    "BudgetPlan",
    "PowerLawFit",
    "data_equivalent_size",
    "data_equivalents",
    "fit_power_law",
    "fit_results",
    "load_results",
    "plan_budget",
    "results_csv",
    "run_learning_curve",
    "summarize",
]
