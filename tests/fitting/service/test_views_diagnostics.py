"""The service shows the diagnostics: per point in /curves/{domain}, per family with warnings, and in the plot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

from tests.fitting import diagnostic_sweep as sweep
from tests.fitting.service.helpers import Live


def test_curves_carry_point_flags_family_counts_and_warnings(live: Callable[..., Live]) -> None:
    srv = live(n_boot=100)
    sweep.write(srv.store, sweep.rows(stored=True))
    (fam,) = srv.get("/curves/lm").json()["families"]
    points = fam["points"]
    assert [p["width_edge"] for p in points] == ["smallest", None, None, "largest", "largest"]
    assert [p["width_at_edge"] for p in points] == [True, False, False, True, True]
    assert [p["hparam_at_edge"] for p in points] == [{}, {}, {}, {}, {"lr": "high"}]
    d = fam["diagnostics"]
    assert (d["n_points"], d["width_at_largest"], d["width_at_smallest"], d["hparam_at_edge"]) == (5, 2, 1, {"lr": 1})
    assert "lm/char: best width is the largest at 2 of 5 shards: β_p is censored — add wider models" in d["warnings"]
    assert [p["not_converged"] for p in points] == [False, False, False, False, True]
    assert points[-1]["trial_converged"] == [False] and d["trials_unknown"] == 0
    assert any("still improving at its budget cap at 1 of 5 shards" in w for w in d["warnings"])
    assert fam["model_size_non_embedding"]["beta_p"] > fam["model_size"]["beta_p"]
    assert points[-1]["best_params_non_embedding"] == 300 * 64**2 and fam["model_size_non_embedding_reason"] is None


def test_an_older_store_judges_convergence_from_the_histories_and_says_why_beta_p_without_embeddings_is_missing(
        live: Callable[..., Live]) -> None:
    srv = live(n_boot=100)
    sweep.write(srv.store, sweep.rows())  # converged and non_embedding_params stored as null
    (fam,) = srv.get("/curves/lm").json()["families"]
    # as `scaling-sweep fit` does: the histories say the largest shard's best configuration was still improving
    assert [p["not_converged"] for p in fam["points"]] == [False] * (len(fam["points"]) - 1) + [True]
    assert fam["diagnostics"]["convergence_unknown"] == 0 and fam["model_size_non_embedding"] is None
    assert "non_embedding_params" in fam["model_size_non_embedding_reason"]


def test_plot_marks_the_flagged_points(live: Callable[..., Live]) -> None:
    srv = live(n_boot=100)
    sweep.write(srv.store, sweep.rows(stored=True))
    r = srv.get("/curves/lm/plot.svg")
    assert r.status_code == 200
    root = ET.fromstring(r.content)
    ids = {el.get("id"): el for el in root.iter() if el.get("id")}
    use = "{http://www.w3.org/2000/svg}use"
    assert len(list(ids["width-largest-char"].iter(use))) == 2
    assert len(list(ids["width-smallest-char"].iter(use))) == 1
    assert len(list(ids["hparam-edge-char"].iter(use))) == 1
    text = " ".join("".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "best width the grid's largest (β_p censored)" in text
    assert len(list(ids["not-converged-char"].iter(use))) == 1
    assert "still improving at its budget cap" in text
