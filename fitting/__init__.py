"""Fitting: results store rows → best configuration per shard → learning-curve and model-size power laws.

Never imports torch or ray: it reads the results store only, so the HTTP service stays light.
Modules: ``store`` (Parquet results), ``aggregate`` (best configuration per shard), ``laws`` (the fits),
``curves`` (per-family fits), ``intervals`` (their calibrated intervals), ``best_size`` (the best model size
between widths), ``report`` (table and JSON), ``reference`` (paper).
The function ``aggregate.aggregate`` is not re-exported: the name would shadow the submodule.
"""

from fitting.aggregate import ShardPoint, load_rows
from fitting.backtest import Backtest
from fitting.curves import CurveFit, Prediction, fit_family, fit_store, predict
from fitting.extrapolate import Extrapolation, extrapolate
from fitting.laws import (
    LawFit,
    LearningCurveFit,
    ModelSizeFit,
    fit_learning_curve,
    fit_model_size,
    fit_power_floor,
    fit_power_law,
)
from fitting.reference import Reference, reference_for
from fitting.report import format_table, to_json

__all__ = [
    "Backtest",
    "CurveFit",
    "Extrapolation",
    "LawFit",
    "LearningCurveFit",
    "ModelSizeFit",
    "Prediction",
    "Reference",
    "ShardPoint",
    "extrapolate",
    "fit_family",
    "fit_learning_curve",
    "fit_model_size",
    "fit_power_floor",
    "fit_power_law",
    "fit_store",
    "format_table",
    "load_rows",
    "predict",
    "reference_for",
    "to_json",
]
