"""Judge learning-curve fitters by extrapolation: fit the small sizes, predict the large ones (DESIGN §5).

LCDB (``lcdb_curves_dev.csv.gz``): curves whose errors are all ≥ 0.01, fitted on sizes ≤ max/8, scored by the
RMSE of log error on the larger sizes, averaged over curves. Revisiting-NMT (``revisiting_nmt_curves.csv``):
fit the ``Training=1`` rows, score the held-out ``Training=0`` rows. Fitters: last value, M1 (power law, OLS
in log space), M2 (power + floor, robust in log space), and ours (form selection + plateau exclusion).

    python benchmarks/fit_extrapolation.py [--limit N] [--data DIR] [--ablations]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fitting.laws import fit_learning_curve, fit_power_floor, fit_power_law

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
Predictor = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def _last(m: np.ndarray, e: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: np.full(np.shape(x), e[np.argmax(m)])


def _law(fitter: Callable) -> Predictor:
    def fit(m: np.ndarray, e: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        law = fitter(m, e)
        law = getattr(law, "law", law)
        return lambda x: np.asarray(law.predict(x), dtype=float)
    return fit


M2 = "M2 power+floor (robust log)"
FITTERS: dict[str, Predictor] = {
    "last value": _last,
    "M1 power (OLS log)": _law(fit_power_law),
    M2: _law(fit_power_floor),
    "ours: auto form + plateau": _law(lambda m, e: fit_learning_curve(m, e, "auto")),
}
ABLATIONS: dict[str, Predictor] = {
    "M2 γ-grid only (no polish)": _law(lambda m, e: fit_power_floor(m, e, polish=False)),
    "ours without plateau": _law(lambda m, e: fit_learning_curve(m, e, "auto", plateau=False)),
    "ours with form=floor": _law(lambda m, e: fit_learning_curve(m, e, "floor")),
}


def _rmse_log(pred: np.ndarray, true: np.ndarray) -> float:
    pred = np.maximum(np.asarray(pred, dtype=float), 1e-12)
    return float(np.sqrt(np.mean((np.log(pred) - np.log(true)) ** 2)))


def lcdb_curves(path: Path, limit: int | None) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, fit mask, sizes, errors) for each curve with every error ≥ 0.01."""
    df = pd.read_csv(path)
    out = []
    for (oid, learner), g in df.groupby(["openmlid", "learner"], sort=True):
        g = g.sort_values("size_train")
        m, e = g["size_train"].to_numpy(float), g["error"].to_numpy(float)
        if e.min() < 0.01:
            continue
        out.append((f"{oid}/{learner}", m <= m.max() / 8, m, e))
        if limit is not None and len(out) >= limit:
            break
    return out


def nmt_curves(path: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    df = pd.read_csv(path)
    out = []
    for model, g in df.groupby("Model", sort=True):
        g = g.sort_values("Seen Examples")
        out.append((str(model), g["Training"].to_numpy() == 1, g["Seen Examples"].to_numpy(float),
                    g["Loss"].to_numpy(float)))
    return out


def evaluate(curves: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
             fitters: dict[str, Predictor]) -> pd.DataFrame:
    """Per-curve RMSE of log error on the held-out sizes, one column per fitter, plus seconds per fitter."""
    rows, seconds = [], dict.fromkeys(fitters, 0.0)
    for name, mask, m, e in curves:
        row: dict[str, float | str] = {"curve": name}
        for label, fitter in fitters.items():
            t0 = time.perf_counter()
            try:
                row[label] = _rmse_log(fitter(m[mask], e[mask])(m[~mask]), e[~mask])
            except (ValueError, RuntimeError, FloatingPointError):
                row[label] = math.nan
            seconds[label] += time.perf_counter() - t0
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["seconds"] = seconds
    return table


def summarize(title: str, table: pd.DataFrame) -> str:
    """Mean and median RMSE per fitter, per-curve wins/ties/losses against M2, failures, seconds spent."""
    ref = table[M2]
    head = (f"{'fitter':30s} {'mean RMSE':>9s} {'median':>7s} {'vs M2 win/tie/loss':>19s} "
            f"{'failed':>6s} {'sec':>5s}")
    lines = [f"{title}: {len(table)} curves", head, "-" * len(head)]
    for label in [c for c in table.columns if c != "curve"]:
        col = table[label]
        both = ref.notna() & col.notna()
        diff = (col[both] - ref[both]).to_numpy()
        wtl = "" if label == M2 else "/".join(
            f"{np.mean(d):.0%}" for d in (diff < -1e-9, np.abs(diff) <= 1e-9, diff > 1e-9))
        lines.append(f"{label:30s} {col.mean():9.4f} {col.median():7.4f} {wtl:>19s} "
                     f"{int(col.isna().sum()):6d} {table.attrs['seconds'][label]:5.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N LCDB curves")
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding the two data files")
    parser.add_argument("--ablations", action="store_true",
                        help="also run variants of our fitter (about twice the time)")
    args = parser.parse_args(argv)
    np.seterr(all="ignore")
    fitters = {**FITTERS, **(ABLATIONS if args.ablations else {})}
    lcdb = args.data / "lcdb_curves_dev.csv.gz"
    print(summarize("LCDB dev (errors ≥ 0.01; fit sizes ≤ max/8; RMSE of log error on larger sizes)",
                    evaluate(lcdb_curves(lcdb, args.limit), fitters)))
    nmt = args.data / "revisiting_nmt_curves.csv"
    if nmt.exists():
        print()
        print(summarize("Revisiting NMT (fit Training=1 rows, predict the Training=0 rows)",
                        evaluate(nmt_curves(nmt), fitters)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
