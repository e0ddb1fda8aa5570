"""The figures are real images with the expected content, not just a 200."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable

import numpy as np
from PIL import Image

from tests.fitting.service.helpers import SIZES, Live, law_plateau, trial_rows, write

SVG = "{http://www.w3.org/2000/svg}"


def _svg(data: bytes) -> tuple[ET.Element, str, dict[str, ET.Element]]:
    root = ET.fromstring(data)
    text = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    ids = {el.get("id"): el for el in root.iter() if el.get("id")}
    return root, text, ids


def test_svg_has_labelled_axes_trials_fit_band_and_excluded_points(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(law=law_plateau))
    fam = srv.get("/curves/lm").json()["families"][0]
    assert fam["fit"]["excluded_sizes"] == SIZES[:2]  # the plateau is there to draw
    r = srv.get("/curves/lm/plot.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root, text, ids = _svg(r.content)
    assert root.tag == f"{SVG}svg"
    assert float(root.get("width", "0").rstrip("pt")) > 500 and float(root.get("height", "0").rstrip("pt")) > 250
    assert "training-set size (words)" in text
    assert "best validation value (val_xent [nats/word])" in text
    assert "best model size (parameters)" in text
    assert "β_g=" in text and "β_p=" in text
    for gid in ("trials-word", "best-word", "excluded-word", "fit-word", "band-word", "extrapolation-word",
                "params-word", "params-fit-word", "params-band-word"):
        assert gid in ids, gid
    paths = list(root.iter(f"{SVG}path"))
    assert 25 < len(paths) < 2000  # axes, ticks, curves, bands, legend; markers are <use> of one path
    # every trial is drawn faint: one marker per usable trial
    assert len(list(ids["trials-word"].iter(f"{SVG}use"))) == 8 * 12
    assert len(list(ids["excluded-word"].iter(f"{SVG}use"))) == 2
    assert len(list(ids["best-word"].iter(f"{SVG}use"))) == 6


def test_png_is_a_decodable_figure_of_sensible_size(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows())
    write(srv.store, trial_rows(family="char", metric="val_bpc", size_unit="characters", law=law_plateau))
    r = srv.get("/curves/lm/plot.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(r.content))
    image.load()
    assert image.format == "PNG" and 800 <= image.width <= 2000 and 300 <= image.height <= 1000
    pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 10  # not a blank canvas
    assert (pixels.min(axis=2) < 100).mean() > 0.005  # dark ink: axes, labels, markers
    assert srv.get("/curves/lm/plot.png", family="char").content != r.content


def test_plot_without_a_fit_still_shows_the_points_and_says_why(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(sizes=SIZES[:2]))
    _, text, ids = _svg(srv.get("/curves/lm/plot.svg").content)
    assert "best-word" in ids and "fit-word" not in ids and "nofit-word" in ids
    assert "no fit: only 2 usable shard(s)" in text
