"""Generated datasets: determinism, the real loaders read them as is, metadata and georeference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod

from cvd.data import CVUSA, SUES200, University1652
from cvd.data.synthetic import METADATA_FILE, GeoReference, World, generate, load_metadata, plan_dataset
from cvd.data.synthetic.generate import IN_PROGRESS_FILE
from cvd.data.synthetic.options import SynthOptions
from cvd.errors import ConfigError

# Small worlds for speed: a 60 m satellite tile and views that look no further than 200 m.
SMALL = {"satellite_extent": 60.0, "max_view_distance": 200.0}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def u1652(tmp_path_factory) -> Path:
    return generate(
        "university1652", tmp_path_factory.mktemp("u1652"), locations=4, views_per_location=2, size=32,
        seed=7, distractors=1, street_views=True, **SMALL,
    )  # fmt: skip


def test_same_seed_gives_the_same_bytes_and_another_seed_another_world(u1652, tmp_path):
    again = generate(
        "university1652", tmp_path / "again", locations=4, views_per_location=2, size=32, seed=7,
        distractors=1, street_views=True, **SMALL,
    )  # fmt: skip
    first, second = _files(u1652), _files(again)
    assert sorted(first) == sorted(second)
    assert all(first[name] == second[name] for name in first)

    other = generate("university1652", tmp_path / "other", locations=4, views_per_location=2, size=32, seed=8,
                     distractors=1, street_views=True, **SMALL)  # fmt: skip
    different = _files(other)
    common = [name for name in different if name in first and name.endswith((".jpg", ".jpeg"))]
    assert len(common) >= 8
    assert all(different[name] != first[name] for name in common)
    a = World(7, SynthOptions()).rasterize(0, 0, 100, 100)
    b = World(8, SynthOptions()).rasterize(0, 0, 100, 100)
    assert not np.array_equal(a.height, b.height)


def test_university1652_tree_loads_with_the_expected_counts(u1652):
    # 4 buildings: 2 train, 2 test, + 1 distractor in the galleries; 2 drone views each
    dataset = University1652(u1652, strict=True)
    assert len(dataset.train_pairs()) == 2 * 2
    splits = {(s.name, s.gallery_variant): s for s in dataset.eval_splits(["official", "sample4geo"])}
    official = splits[("drone->satellite", "official")]
    assert len(official.queries) == 2 * 2 and len(official.gallery) == 3
    assert all(r.label >= 0 for r in official.gallery)
    sample4geo = splits[("drone->satellite", "sample4geo")]
    assert sum(r.label == -1 for r in sample4geo.gallery) == 1
    reverse = splits[("satellite->drone", "official")]
    assert len(reverse.queries) == 2 and len(reverse.gallery) == 3 * 2
    assert {r.location for r in official.queries} <= {r.location for r in official.gallery}
    street = University1652(u1652, query_view="street", strict=True)
    assert len(street.train_pairs()) == 2 * 2


def test_sues200_tree_loads_in_both_layouts_with_the_same_split(tmp_path):
    root = generate("sues200", tmp_path / "sues", locations=5, views_per_location=1, size=32, seed=3, **SMALL)
    split = SUES200(root, altitude=[150, 300])  # auto: the written Training/Testing folders
    raw = SUES200(root, altitude=[150, 300], layout="raw", train_fraction=0.6)
    assert split.layout == "split" and raw.layout == "raw"
    assert split.train_ids == raw.train_ids == ["0001", "0002", "0003"]
    assert split.test_ids == raw.test_ids == ["0004", "0005"]
    for dataset in (split, raw):
        assert len(dataset.train_pairs()) == 3 * 2  # 3 locations x 1 view x 2 altitudes
        by_name = {s.name: s for s in dataset.eval_splits()}
        drone_150 = by_name["drone->satellite/150m"]
        assert len(drone_150.queries) == 2 and len(drone_150.gallery) == 5  # training ids are distractors
        assert len(by_name["satellite->drone/300m"].gallery) == 5


def test_cvusa_tree_loads_with_gps_from_all_csv(tmp_path):
    root = generate("cvusa", tmp_path / "cvusa", locations=5, views_per_location=1, size=32, seed=5, **SMALL)
    dataset = CVUSA(root, strict=True)
    pairs = dataset.train_pairs()
    (evaluation,) = dataset.eval_splits()
    assert len(pairs) == 4 and len(evaluation.queries) == len(evaluation.gallery) == 1
    meta = load_metadata(root)
    for pair in pairs:
        entry = meta["location_entries"][pair.location]
        assert pair.gps == pytest.approx((entry["lat"], entry["lon"]), abs=1e-7)
    panorama = meta["images"][f"streetview/panos/{evaluation.queries[0].location}.jpg"]
    assert panorama["width"] / panorama["height"] == pytest.approx(1232 / 224, rel=0.1)
    # replacing it with another seed leaves no trace of the first
    generate("cvusa", root, locations=3, views_per_location=1, size=32, seed=6, overwrite=True, **SMALL)
    assert load_metadata(root)["seed"] == 6
    assert len(list((root / "bingmap" / "19").iterdir())) == 3


def test_metadata_describes_every_image_and_location(u1652):
    meta = json.loads((u1652 / METADATA_FILE).read_text())
    assert meta["seed"] == 7 and meta["version"] and meta["options"]["satellite_extent"] == 60.0
    written = {str(p.relative_to(u1652)) for p in u1652.rglob("*.jp*g")}
    assert written == set(meta["images"])
    altitudes = set(SynthOptions().altitudes)
    for _path, camera in meta["images"].items():
        entry = meta["location_entries"][camera["location"]]
        assert -90 <= entry["lat"] <= 90 and -180 <= entry["lon"] <= 180
        if camera["view"] == "drone":
            assert camera["altitude_m"] in altitudes
            assert camera["position_xyz"][2] - entry["ground_z"] == pytest.approx(
                camera["altitude_m"], abs=1e-3
            )
            assert {"fx", "fy", "cx", "cy"} <= set(camera["intrinsics"])
            assert camera["width"] == camera["height"] == 32
        if camera["view"] == "satellite":
            assert camera["gsd_m"] == pytest.approx(60.0 / 32)
    assert "sun_elevation_deg" in entry["drone_capture"] and "sun_azimuth_deg" in entry["satellite_capture"]


def test_georeference_keeps_distances_and_north():
    """World metres -> lat/lon against pyproj's geodesic solver (a different computation)."""
    geo = GeoReference(47.3769, 8.5417)
    geod = Geod(ellps="WGS84")
    for x, y in ((0.0, 1000.0), (1000.0, 0.0), (-2500.0, 1800.0)):
        lat, lon = geo.to_latlon(x, y)
        azimuth, _, distance = geod.inv(8.5417, 47.3769, float(lon), float(lat))
        assert distance == pytest.approx(math.hypot(x, y), rel=1e-4)
        assert azimuth % 360 == pytest.approx(math.degrees(math.atan2(x, y)) % 360, abs=0.05)
        back = geo.to_world(lat, lon)
        assert back[0] == pytest.approx(x, abs=1e-6) and back[1] == pytest.approx(y, abs=1e-6)


def test_plans_follow_the_benchmarks_proportions():
    options = SynthOptions()
    u = plan_dataset("university1652", 100, 3, 0, options)
    roles = [s.role for s in u]
    assert (
        roles.count("train") == 50
        and roles.count("test") == 50
        and roles.count("distractor") == round(50 * 250 / 701)
    )
    assert sorted(s.name for s in u) == [f"{n:04d}" for n in range(1, len(u) + 1)]
    assert all(len(s.drone) == 3 for s in u)
    s = plan_dataset("sues200", 200, 2, 0, options)
    from cvd.data.sues200 import OFFICIAL_TRAIN_IDS

    assert sorted(x.name for x in s if x.role == "train") == sorted(OFFICIAL_TRAIN_IDS)
    assert all(len(x.drone) == 2 * 4 for x in s)
    c = plan_dataset("cvusa", 10, 1, 0, options)
    assert [x.role for x in c].count("val") == 2 and all(x.panorama for x in c)


def test_existing_output_is_reused_replaced_or_protected(u1652, tmp_path):
    before = _files(u1652)
    # the same request finds its dataset and writes nothing
    again = generate(
        "university1652", u1652, locations=4, views_per_location=2, size=32, seed=7,
        distractors=1, street_views=True, **SMALL,
    )  # fmt: skip
    assert again == u1652 and _files(u1652) == before
    # another request must not silently mix two datasets in one tree
    with pytest.raises(ConfigError, match="overwrite"):
        generate("university1652", u1652, locations=4, views_per_location=2, size=32, seed=9, **SMALL)
    # a folder that is not a synthetic dataset is never written into
    stranger = tmp_path / "photos"
    stranger.mkdir()
    (stranger / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(ConfigError, match="not empty"):
        generate(
            "cvusa", stranger, locations=3, views_per_location=1, size=32, seed=0, overwrite=True, **SMALL
        )
    assert (stranger / "holiday.jpg").read_bytes() == b"not ours"


def test_an_interrupted_generation_is_redone_not_an_error(tmp_path):
    arguments = dict(locations=3, views_per_location=1, size=32, seed=3, **SMALL)
    complete = _files(generate("cvusa", tmp_path / "complete", **arguments))
    assert not any(IN_PROGRESS_FILE in name for name in complete)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt  # as a Ctrl-C after the first location

    root = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        generate("cvusa", root, progress=interrupt, **arguments)
    assert (root / IN_PROGRESS_FILE).is_file() and not (root / METADATA_FILE).exists()
    # the same request, without overwrite, finishes the dataset: byte for byte the complete one
    generate("cvusa", root, **arguments)
    assert _files(root) == complete


@pytest.mark.slow
def test_worker_processes_do_not_change_a_single_byte(tmp_path):
    arguments = dict(locations=16, views_per_location=2, size=32, seed=4, **SMALL)
    one = generate("university1652", tmp_path / "one", workers=1, **arguments)
    two = generate("university1652", tmp_path / "two", workers=2, **arguments)
    first, second = _files(one), _files(two)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
