"""Position estimate, confidence, Game4Loc metrics (hand-worked) and per-query bad-input handling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from cvd.earth import EARTH_RADIUS_M
from cvd.errors import DatasetLayoutError
from cvd.geo.gallery_index import GalleryIndex, ModelInfo
from cvd.geo.localization import (
    QueryResult,
    dis_at_k,
    estimate_position,
    localize,
    read_ground_truth,
    sdm_at_k,
    summarize,
)

METRE_DEG = 180.0 / (math.pi * EARTH_RADIUS_M)  # degrees of latitude per metre


def test_agreeing_neighbours_are_averaged_by_softmax_weight():
    # top-1 at the origin, #2 100 m north (agrees within 150 m), #3 5 km north (does not)
    scores = np.array([0.90, 0.85, 0.80])
    lat = np.array([0.0, 100 * METRE_DEG, 5000 * METRE_DEG])
    lon = np.zeros(3)
    estimate = estimate_position(scores, lat, lon, agree_radius_m=150.0, temperature=0.05)
    # softmax(s / 0.05) = softmax(18, 17, 16): weights 1, e^-1, e^-2 over their sum
    z = 1 + math.exp(-1) + math.exp(-2)
    p0, p1 = 1 / z, math.exp(-1) / z
    assert estimate.method == "weighted" and estimate.n_agree == 2
    assert estimate.confidence == pytest.approx(p0 + p1, abs=1e-12)
    # on a meridian the spherical weighted mean is the angle-weighted mean (atan2 of the sums)
    angle = 100 * METRE_DEG * math.pi / 180
    expected = math.degrees(math.atan2(p1 * math.sin(angle), p0 + p1 * math.cos(angle)))
    assert estimate.lat == pytest.approx(expected, abs=1e-12)
    assert estimate.lon == pytest.approx(0.0, abs=1e-12)


def test_no_agreement_means_the_top1_centre():
    estimate = estimate_position(np.array([0.5, 0.45]), np.array([10.0, 11.0]), np.array([20.0, 20.0]), 150.0)
    assert (estimate.lat, estimate.lon, estimate.method, estimate.n_agree) == (10.0, 20.0, "top1", 1)
    assert estimate.confidence == pytest.approx(1 / (1 + math.exp(-1)))


def test_padding_scores_are_ignored():
    estimate = estimate_position(np.array([0.5, -np.inf]), np.array([1.0, 2.0]), np.array([1.0, 2.0]), 1e9)
    assert estimate.confidence == 1.0 and estimate.method == "top1"


def test_dis_and_sdm_at_k_hand_worked():
    distances = [np.array([100.0, 200.0, 300.0, 400.0, 500.0]), np.array([0.0, 0.0, 1000.0, 0.0, 0.0])]
    dis = dis_at_k(distances)
    assert dis == pytest.approx(
        {"Dis@1": 50.0, "Dis@3": (200.0 + 1000 / 3) / 2, "Dis@5": (300.0 + 200.0) / 2}
    )
    sdm = sdm_at_k(distances)
    first = (3 * math.exp(-0.1) + 2 * math.exp(-0.2) + math.exp(-0.3)) / 6
    second = (3 + 2 + math.exp(-1.0)) / 6
    assert sdm["SDM@1"] == pytest.approx((math.exp(-0.1) + 1.0) / 2)
    assert sdm["SDM@3"] == pytest.approx((first + second) / 2)


@pytest.fixture()
def gallery(tmp_path, helpers):
    """20 tiles with distinct patterns, indexed with the hand-made embedder."""
    embedder = helpers.HandEmbedder()
    tiles = helpers.grid_tiles(tmp_path / "tiles", 20, spacing_deg=0.01)
    images = [embedder.transform(Image.open(t.path)) for t in tiles]
    import torch

    vectors = embedder.embed(torch.stack(images))
    index = GalleryIndex.build(vectors, tiles, ModelInfo(embedder.identity, "hand"))
    return embedder, index, tiles


def test_each_tile_image_localizes_to_its_own_tile(gallery):
    embedder, index, tiles = gallery
    results = localize(embedder, index, [t.path for t in tiles], k=3)
    for tile, result in zip(tiles, results):
        record = result.to_json(index, 3)
        assert record["ok"] and record["top_k"][0]["id"] == tile.id
        assert record["top_k"][0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert len(record["top_k"]) == 3 and record["top_k"][0]["rank"] == 1


def test_bad_queries_get_their_own_errors_and_the_others_still_answer(gallery, tmp_path, helpers):
    embedder, index, tiles = gallery
    grey = tmp_path / "grey.png"
    Image.open(tiles[5].path).convert("L").save(grey)
    rgba = tmp_path / "rgba.png"
    Image.open(tiles[6].path).convert("RGBA").save(rgba)
    tiny = helpers.save_png(tmp_path / "tiny.png", np.zeros((12, 40, 3)))
    deep = tmp_path / "deep.tif"  # float samples with no known scale
    Image.fromarray(np.full((40, 40), 1000.0, dtype=np.float32)).save(deep)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    queries = [tiles[0].path, broken, grey, tmp_path / "absent.png", tiny, rgba, deep, tiles[1].path]
    records = [r.to_json(index, 1) for r in localize(embedder, index, queries, k=1, batch_size=2)]
    assert [r["ok"] for r in records] == [True, False, True, False, False, True, False, True]
    assert records[0]["top_k"][0]["id"] == tiles[0].id and records[7]["top_k"][0]["id"] == tiles[1].id
    assert str(broken) in records[1]["error"] and "cannot read image" in records[1]["error"]
    assert records[2]["note"] == "converted from L to RGB"
    assert str(tmp_path / "absent.png") in records[3]["error"] and "not found" in records[3]["error"]
    assert "40x12 px, too small" in records[4]["error"]
    assert records[5]["note"] == "converted from RGBA to RGB (alpha channel dropped)"
    assert records[5]["top_k"][0]["id"] == tiles[6].id
    assert "float image (mode F)" in records[6]["error"] and str(deep) in records[6]["error"]


def test_ground_truth_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("path,lat,lon\na.jpg,10,20\nb.jpg,,20\n,1,2\nc.jpg,95,0\n")
    with pytest.raises(DatasetLayoutError) as caught:
        read_ground_truth(path)
    message = str(caught.value)
    assert str(path) in message and "3 bad line(s)" in message
    assert "line 3: missing value in column 'lat'" in message
    assert "line 4: missing value in column 'path'" in message
    assert "line 5: latitude 95.0 is outside [-90, 90]" in message


def test_summary_with_ground_truth_by_file_name(gallery, tmp_path):
    embedder, index, tiles = gallery
    gt_path = tmp_path / "gt.csv"
    # query 0 is really 111.2 m (0.001 deg) north of tile 0; query 1 exactly at tile 1
    gt_path.write_text(
        f"image,lat,lon\n{tiles[0].path.name},{tiles[0].lat + 0.001},{tiles[0].lon}\n"
        f"{tiles[1].path.name},{tiles[1].lat},{tiles[1].lon}\n"
    )
    truth = read_ground_truth(gt_path)
    results = localize(
        embedder, index, [tiles[0].path, tiles[1].path, tmp_path / "x.png"], k=5, ground_truth=truth
    )
    summary = summarize(results, index)
    metre_per_mdeg = EARTH_RADIUS_M * math.radians(0.001)
    assert summary["n_queries"] == 3 and summary["n_failed"] == 1 and summary["n_with_gt"] == 2
    assert summary["Dis@1"] == pytest.approx(metre_per_mdeg / 2, rel=1e-9)
    assert summary["top1_within_m"] == {"25": 0.5, "50": 0.5, "100": 0.5, "250": 1.0}
    record = results[0].to_json(index, 5)
    assert record["top1_error_m"] == pytest.approx(metre_per_mdeg, abs=1e-3)
    assert record["gt_lat"] == pytest.approx(tiles[0].lat + 0.001)


def test_query_result_without_answer_serialises_its_error():
    assert QueryResult("q.jpg", error="q.jpg: bad").to_json(None, 5) == {
        "query": "q.jpg",
        "ok": False,
        "error": "q.jpg: bad",
    }


def test_package_level_names_are_the_documented_functions():
    # docs/localization.md imports these from cvd.geo; a submodule of the same name would shadow them
    import types

    import cvd.geo as geo
    from cvd.geo import localization

    for name in geo._LAZY:
        assert not isinstance(getattr(geo, name), types.ModuleType), name
    assert geo.localize is localization.localize and callable(geo.localize)
