"""Two model families compared: Δβ_g with its interval, a test of equal exponents, and the offset as a data
multiplier ("b reaches a's error with 0.6× the data").

Why this test: the paper's claim is that a better model shifts the learning curve without changing its
exponent. Each family's learning curve is the paper's: best configuration per shard, small-data plateau cut,
a pure power law in log space, with the best width's distance from the best size taken out
(:func:`fitting.intervals.grid_penalty`) exactly as the calibrated β_g intervals do. Shard points then carry
roughly independent errors, so equal exponents are tested as a regression:

- both families measured at the same train sizes (the usual case: one sweep, or two sweeps over the same
  shards): the per-shard log difference y_b − y_a regressed on log m. Its slope is Δβ_g with a Student-t(n − 2)
  interval and test, and noise the two families share at a shard (the same lucky shuffle) cancels;
- different train sizes: the likelihood-ratio (F) test of one shared slope against two, with the pooled
  residual scale, i.e. the t test of the slope difference with n_a + n_b − 4 dof.

The data multiplier is read at a's fitted error at its largest shard; its interval comes from draws of the same
t distributions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from scipy import stats

from fitting.aggregate import best_per_shard, load_rows, usable_trials
from fitting.best_size import fit_best_size
from fitting.intervals import grid_penalty, quantile_interval, t_line
from fitting.laws import MIN_POINTS, fit_learning_curve, jsonable
from fitting.store import ResultsStore

LEVEL = 0.95
N_DRAWS = 4000
Interval = tuple[float, float]


class CompareError(ValueError):
    """A comparison that cannot be made as asked (unknown family or domain, too few shards)."""


@dataclass
class Line:
    """One family's learning curve as the comparison sees it: log sizes, log errors net of the grid penalty."""

    family: str
    storage: str
    sizes: np.ndarray
    log_error: np.ndarray  # ln(best error) − grid penalty
    alpha: float
    beta: float
    excluded: int  # plateau shards cut

    def at(self, size: float) -> float:
        return self.alpha * size**self.beta


def family_line(rows: pd.DataFrame, family: str, storage: str = "", metric: str | None = None, *,
                plateau: bool = True) -> Line:
    """The learning curve of one family's rows (see the module docstring)."""
    trials = usable_trials(rows, metric)
    points = [p for p in best_per_shard(trials) if p.best_error > 0]
    if len(points) < MIN_POINTS:
        raise CompareError(f"family {family!r}: {len(points)} usable shard(s), a comparison needs {MIN_POINTS}")
    m = np.array([p.train_size for p in points])
    eps = np.array([p.best_error for p in points])
    lc = fit_learning_curve(m, eps, "power", plateau=plateau)
    m, eps, used = m[lc.n_excluded:], eps[lc.n_excluded:], points[lc.n_excluded:]
    pen = None
    params = [p.best_params for p in used]
    if trials.frame["width"].nunique() >= 2 and all(v is not None and v > 0 for v in params):
        size_law = fit_best_size(trials.frame, list(m))
        pen = grid_penalty(m, np.array(params, float), size_law)
    y = np.log(eps) - (pen if pen is not None else 0.0)
    x = np.log(m)
    b, a = np.polyfit(x, y, 1)
    return Line(family, storage, m, y, float(math.exp(a)), float(b), lc.n_excluded)


@dataclass
class Comparison:
    """Family b against family a: Δβ_g = β_b − β_a, the test of equal exponents, the data multiplier."""

    domain: str
    metric: str
    family_a: str
    family_b: str
    storage_a: str
    storage_b: str
    beta_a: float
    beta_b: float
    delta_beta: float
    delta_beta_ci: Interval | None
    p_value: float | None
    test: str
    dof: int
    reference_size: float  # a's largest fitted shard
    reference_error: float  # a's fitted error there
    multiplier: float | None  # data b needs for that error / reference_size (inf: b never gets there)
    multiplier_ci: Interval | None
    level: float = LEVEL
    shards_a: int = 0
    shards_b: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def equal_rejected(self) -> bool:
        return self.p_value is not None and self.p_value < 1 - self.level

    def sentence(self) -> str:
        """The comparison in one line, as the table and the CLI print it."""
        ci = self.delta_beta_ci
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        p = "–" if self.p_value is None else f"{self.p_value:.3g}"
        verdict = "exponents differ" if self.equal_rejected else "equal exponents not rejected"
        a, b = self.family_a, self.family_b
        if self.multiplier is None or not math.isfinite(self.multiplier):
            reach = f"{b} does not reach {a}'s error {self.reference_error:.3g} on its fitted curve"
        else:
            mci = self.multiplier_ci
            mci_text = f" [{_mult(mci[0])}, {_mult(mci[1])}]" if mci else ""
            reach = (f"{b} reaches {a}'s error {self.reference_error:.3g} (at {self.reference_size:.3g}) with "
                     f"{_mult(self.multiplier)}× the data{mci_text}")
        return (f"{self.domain}: {b} vs {a}: Δβ_g = {self.delta_beta:+.3f}{ci_text} (β_g {self.beta_b:.3f} vs "
                f"{self.beta_a:.3f}), p = {p} ({verdict}); {reach}")

    def format_text(self) -> str:
        """The sentence, then the numbers behind it (the CLI's output)."""
        lines = [self.sentence(), f"  test: {self.test}",
                 f"  shards fitted: {self.family_a} {self.shards_a}, {self.family_b} {self.shards_b}; metric "
                 f"{self.metric}; intervals at {self.level:.0%}"]
        if self.storage_a != self.storage_b:
            lines.append(f"  {self.family_a} from {self.storage_a}; {self.family_b} from {self.storage_b}")
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["equal_rejected"] = self.equal_rejected
        out["sentence"] = self.sentence()
        return jsonable(out)


def _mult(v: float) -> str:
    return "∞" if not math.isfinite(v) else f"{v:.2g}"


def _paired(a: Line, b: Line) -> bool:
    return a.sizes.size == b.sizes.size and bool(np.allclose(a.sizes, b.sizes, rtol=1e-9))


def compare_lines(a: Line, b: Line, *, domain: str = "", metric: str = "", level: float = LEVEL,
                  n_draws: int = N_DRAWS, seed: int = 0) -> Comparison:
    """Δβ_g, its interval and the test of equal exponents for two learning curves (see the module docstring)."""
    rng = np.random.default_rng(seed)
    xa, xb = np.log(a.sizes), np.log(b.sizes)
    x_ref = float(xa[-1])
    log_ref = math.log(a.alpha) + a.beta * x_ref
    if _paired(a, b):
        iv, d0, d1 = t_line(xa, b.log_error - a.log_error, n_draws, level, rng)
        n = xa.size
        dof = n - 2
        xc = xa - xa.mean()
        slope = float(xc @ (b.log_error - a.log_error) / (xc @ xc))
        resid = b.log_error - a.log_error - (b.log_error - a.log_error).mean() - slope * xc
        se = math.sqrt(float(resid @ resid) / dof / float(xc @ xc)) if dof > 0 else math.inf
        _, _, beta_b_draws = t_line(xb, b.log_error, n_draws, level, rng)
        diff_at_ref = d0 + d1 * x_ref  # ln ε_b − ln ε_a at the reference size, paired noise cancelled
        test = (f"paired: per-shard log difference regressed on log size (same {n} train sizes), Student-t "
                f"({dof} dof)")
        delta_ci = iv["b"]
    else:
        dof = xa.size + xb.size - 4
        rss = sum(float(np.sum((ln.log_error - np.polyval(np.polyfit(x, ln.log_error, 1), x)) ** 2))
                  for ln, x in ((a, xa), (b, xb)))
        sxx_a, sxx_b = float(np.sum((xa - xa.mean()) ** 2)), float(np.sum((xb - xb.mean()) ** 2))
        slope = b.beta - a.beta
        se = math.sqrt(rss / dof * (1 / sxx_a + 1 / sxx_b)) if dof > 0 else math.inf
        t = float(stats.t.ppf(0.5 + level / 2, dof)) if dof > 0 else math.inf
        delta_ci = (slope - t * se, slope + t * se) if dof > 0 else None
        _, a0, a1 = t_line(xa, a.log_error, n_draws, level, rng)
        _, b0, beta_b_draws = t_line(xb, b.log_error, n_draws, level, rng)
        diff_at_ref = (b0 + beta_b_draws * x_ref) - (a0 + a1 * x_ref)
        test = (f"likelihood ratio of one shared slope against two (F test, pooled log-residual scale; train "
                f"sizes differ), Student-t ({dof} dof)")
    p_value = float(2 * stats.t.sf(abs(slope / se), dof)) if dof > 0 and se > 0 else None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # a draw far beyond: an infinite multiplier
        mult_draws = np.where(beta_b_draws < 0, np.exp(-diff_at_ref / beta_b_draws), np.inf)
    mult = math.exp((log_ref - math.log(b.alpha)) / b.beta - x_ref) if b.beta < 0 else math.inf
    out = Comparison(domain, metric, a.family, b.family, a.storage, b.storage, a.beta, b.beta, slope, delta_ci,
                     p_value, test, dof, float(a.sizes[-1]), math.exp(log_ref), mult,
                     _inf_interval(mult_draws, level), level, a.sizes.size, b.sizes.size)
    out.notes.append("β_g: pure power law over each family's fitted shards, net of the best width's distance from "
                     "the best size (the paper's exponent)")
    if a.excluded or b.excluded:
        out.notes.append(f"small-data plateau shards left out: {a.family} {a.excluded}, {b.family} {b.excluded}")
    if not _paired(a, b):
        out.notes.append("train sizes differ between the two: noise shared by a shard cannot cancel")
    return out


def _inf_interval(values: np.ndarray, level: float) -> Interval | None:
    v = values[~np.isnan(values)]
    if v.size < 2:
        return None
    if np.isfinite(v).all():
        return quantile_interval(v, level)
    lo, hi = np.quantile(np.sort(v), [(1 - level) / 2, 1 - (1 - level) / 2], method="nearest")
    return float(lo), float(hi)


def compare_rows(rows_a: pd.DataFrame, rows_b: pd.DataFrame, *, metric: str | None = None, plateau: bool = True,
                 level: float = LEVEL, seed: int = 0, storage_a: str = "", storage_b: str = "") -> Comparison:
    """Compare two families given their store rows (one family each; parsed with :func:`load_rows`)."""
    fam_a, fam_b = (str(r["family"].dropna().iloc[0]) if len(r) else "" for r in (rows_a, rows_b))
    if metric is None:
        names = [usable_trials(r).metric if len(r) else "" for r in (rows_a, rows_b)]
        if names[0] != names[1]:
            raise CompareError(f"metric: {fam_a!r} reports {names[0]!r} and {fam_b!r} reports {names[1]!r}; errors in "
                               "different metrics do not compare: name a metric both report")
    dom = rows_a["domain"].dropna() if "domain" in rows_a.columns else pd.Series([], dtype=str)
    a = family_line(rows_a, fam_a, storage_a, metric, plateau=plateau)
    b = family_line(rows_b, fam_b, storage_b, metric, plateau=plateau)
    name = metric or usable_trials(rows_a, metric).metric
    return compare_lines(a, b, domain=str(dom.iloc[0]) if len(dom) else "", metric=name, level=level, seed=seed)


# --------------------------------------------------------------------------------------------- from stores
def read_rows(storage: str) -> pd.DataFrame:
    """Every trial row of a storage, JSON columns parsed (unreadable files skipped, as the store does)."""
    table = ResultsStore(storage).read_results()
    return load_rows(table.filter(pc.is_valid(table["domain"]))) if table.num_rows else pd.DataFrame(
        columns=["domain", "family"])


def _pick_domain(rows_a: pd.DataFrame, rows_b: pd.DataFrame, fam_a: str, fam_b: str, domain: str | None) -> str:
    dom_a = set(rows_a.loc[rows_a["family"] == fam_a, "domain"].astype(str))
    dom_b = set(rows_b.loc[rows_b["family"] == fam_b, "domain"].astype(str))
    if domain is not None:
        for fam, doms, rows in ((fam_a, dom_a, rows_a), (fam_b, dom_b, rows_b)):
            if domain not in doms:
                known = sorted(set(rows.loc[rows["domain"] == domain, "family"].astype(str)))
                raise CompareError(f"domain: family {fam!r} has no trials in domain {domain!r}; families there: "
                                   f"{', '.join(known) or '(none)'}")
        return domain
    both = sorted(dom_a & dom_b)
    if len(both) == 1:
        return both[0]
    if not both:
        raise CompareError(f"families: no domain holds both {fam_a!r} ({', '.join(sorted(dom_a)) or 'no trials'}) "
                           f"and {fam_b!r} ({', '.join(sorted(dom_b)) or 'no trials'})")
    raise CompareError(f"domain: {fam_a!r} and {fam_b!r} are both in {', '.join(both)}; name one with --domain")


def parse_families(text: str | Sequence[str], two_storages: bool) -> tuple[str, str]:
    """'a,b' → (a, b); the same name twice only makes sense across two storages."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if len(names) != 2:
        raise CompareError(f"families: give exactly two names as a,b; got {names}")
    if names[0] == names[1] and not two_storages:
        raise CompareError(f"families: {names[0]!r} twice; compare a family with itself across two storages "
                           "(--storage2)")
    return names[0], names[1]


def compare_store(storage: str, families: str | Sequence[str], *, storage2: str | None = None,
                  domain: str | None = None, metric: str | None = None, plateau: bool = True,
                  level: float = LEVEL, seed: int = 0) -> Comparison:
    """Compare family a (in ``storage``) with family b (in ``storage2``, default the same storage)."""
    fam_a, fam_b = parse_families(families, storage2 is not None)
    rows_a = read_rows(storage)
    rows_b = read_rows(storage2) if storage2 is not None else rows_a
    for fam, rows, where in ((fam_a, rows_a, storage), (fam_b, rows_b, storage2 or storage)):
        known = sorted(set(rows["family"].dropna().astype(str)))
        if fam not in known:
            raise CompareError(f"families: {fam!r} has no trials in {where}; known: {', '.join(known) or '(none)'}")
    dom = _pick_domain(rows_a, rows_b, fam_a, fam_b, domain)
    sel_a = rows_a[(rows_a["domain"] == dom) & (rows_a["family"] == fam_a)]
    sel_b = rows_b[(rows_b["domain"] == dom) & (rows_b["family"] == fam_b)]
    return compare_rows(sel_a, sel_b, metric=metric, plateau=plateau, level=level, seed=seed,
                        storage_a=storage, storage_b=storage2 or storage)


# ------------------------------------------------------------------------------------------ the sweep table
def summary_lines(source: pd.DataFrame | Any, *, n_boot: int = 200, seed: int = 0) -> list[str]:
    """Lines for the table printed after a sweep: each family's surface β_p and compute-optimal exponent, and
    for a domain with exactly two families, their comparison. ``source``: store rows (Table or DataFrame)."""
    from fitting.optimal import frontier
    from fitting.surface import fit_surface

    rows = load_rows(source)
    if rows.empty:
        return []
    lines = ["surface (joint fit of every shard × model size cell):"]
    for (domain, family), sub in rows.groupby(["domain", "family"], sort=True):
        name = f"  {domain}/{family}:"
        try:
            fit = fit_surface(sub, n_boot=n_boot, seed=seed)
        except ValueError as exc:
            lines.append(f"{name} no surface: {exc}")
            continue
        if not fit.fitted:
            lines.append(f"{name} no surface: {fit.reason}")
            continue
        ci = fit.intervals.get("beta_p")
        beta = (f"β_p {fit.beta_p:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                if fit.beta_p is not None else "β_p – (additive form: no best size at fixed data)")
        fr = frontier(fit)
        fci = fr.n_exponent_ci
        lines.append(f"{name} {beta}; compute-optimal N_opt ∝ C^{fr.n_exponent:.3f}"
                     + (f" [{fci[0]:.3f}, {fci[1]:.3f}]" if fci else "")
                     + f" ({fit.form} form, {fit.compute_source})")
    for domain, sub in rows.groupby("domain", sort=True):
        families = sorted(sub["family"].dropna().astype(str).unique())
        if len(families) != 2:
            continue
        a, b = (sub[sub["family"] == f] for f in families)
        try:
            lines.append("comparison: " + compare_rows(a, b, seed=seed).sentence())
        except CompareError as exc:
            lines.append(f"comparison: {domain}: {families[1]} vs {families[0]}: not possible: {exc}")
    return lines
