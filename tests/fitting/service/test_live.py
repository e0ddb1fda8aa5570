"""The service follows a store while a writer adds trials: new shards show up, fits change, nothing is reread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx

from tests.fitting.service.helpers import SIZES, Live, trial_rows, write


def test_fit_follows_the_store_as_trials_land(live: Callable[..., Live]) -> None:
    srv = live()
    assert srv.get("/curves").json()["domains"] == []
    missing = srv.get("/curves/lm")
    assert missing.status_code == 404 and missing.json()["detail"]["known_domains"] == []

    write(srv.store, trial_rows(sizes=SIZES[:2]))  # 2 shards: too few to fit
    early = srv.get("/curves/lm")
    assert early.status_code == 200
    (fam,) = early.json()["families"]
    assert fam["fit"] is None and "only 2 usable shard" in fam["reason"]
    assert [p["train_size"] for p in fam["points"]] == SIZES[:2]
    assert {p["role"] for p in fam["points"]} == {"unfitted"}

    write(srv.store, trial_rows(sizes=SIZES[2:6]))  # 6 shards of ε = 5·m^-0.3
    mid = srv.get("/curves/lm").json()["families"][0]
    assert mid["fit"] is not None and mid["reason"] is None
    assert abs(mid["fit"]["beta_g"] + 0.3) < 0.03
    assert mid["fit"]["size_range"] == {"min": SIZES[0], "max": SIZES[5]}
    assert mid["trials"]["completed"] == 6 * 12

    # the two largest shards come in much better than the law: the exponent steepens
    write(srv.store, trial_rows(sizes=SIZES[6:], law=lambda m: 0.5 * 5.0 * m**-0.3))
    late = srv.get("/curves/lm").json()["families"][0]
    assert late["fit"]["size_range"]["max"] == SIZES[-1]
    assert late["fit"]["beta_g"] < mid["fit"]["beta_g"] - 0.05
    assert late["extrapolation_check"]["held_out_size"] == SIZES[-1]

    engine = srv.app.state.engine
    assert engine.index.files_read == 8 * 12  # every file read exactly once, never the whole store again


def test_unchanged_store_is_answered_from_cache_and_only_changed_family_refits(live: Callable[..., Live]) -> None:
    srv = live()
    write(srv.store, trial_rows(family="word"))
    write(srv.store, trial_rows(family="char", metric="val_bpc", size_unit="characters"))
    first = srv.get("/curves/lm")
    engine = srv.app.state.engine
    misses = engine.fits.misses
    assert misses == 2  # one fit per family
    again = srv.get("/curves/lm")
    assert again.content == first.content and engine.fits.misses == misses
    assert srv.client.get("/curves/lm", headers={"If-None-Match": first.headers["etag"]}).status_code == 304

    write(srv.store, trial_rows(family="char", metric="val_bpc", size_unit="characters", sizes=[256000.0]))
    after = srv.get("/curves/lm")
    assert after.headers["etag"] != first.headers["etag"]
    assert engine.fits.misses == misses + 1  # char refitted, word served from cache
    char = next(f for f in after.json()["families"] if f["family"] == "char")
    assert char["points"][-1]["train_size"] == 256000.0
    assert engine.index.files_read == 2 * 96 + 12


def test_concurrent_writer_and_readers(live: Callable[..., Live]) -> None:
    """A writer adds shard after shard while the client polls: every answer is valid, counts only grow."""
    srv = live(n_boot=50)
    write(srv.store, trial_rows(sizes=SIZES[:1]))
    done = threading.Event()

    def writer() -> None:
        for size in SIZES[1:]:
            write(srv.store, trial_rows(sizes=[size], seed=int(size)))
            time.sleep(0.02)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        while not done.is_set() or len(seen) < 2:
            r = client.get("/curves/lm")
            assert r.status_code == 200, r.text
            seen.append(r.json()["trials"]["total"])
        thread.join()
        final = client.get("/curves/lm").json()
    assert seen == sorted(seen) and seen[0] >= 12
    assert final["trials"]["total"] == len(SIZES) * 12
    assert final["families"][0]["fit"]["n_points"] + len(final["families"][0]["fit"]["excluded_sizes"]) == 8
