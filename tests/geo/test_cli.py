"""`cvd index` and `cvd localize` end to end with a tiny released model (random weights, 64 px)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cvd.cli import main
from cvd.geo.embedders import release_identity


@pytest.fixture(scope="module")
def map_image(tmp_path_factory):
    """A 256 x 192 px map with a distinct pattern in every 32 px cell, over a 0.02 x 0.015 deg area."""
    rng = np.random.default_rng(3)
    cells = rng.integers(0, 256, size=(6, 8, 3)).astype(np.uint8)
    pixels = np.asarray(Image.fromarray(cells).resize((256, 192), Image.Resampling.NEAREST)).copy()
    pixels += rng.integers(0, 30, size=pixels.shape, dtype=np.uint8)  # texture inside the cells
    path = tmp_path_factory.mktemp("map") / "map.png"
    Image.fromarray(pixels).save(path)
    return path


CORNERS = "47.395,8.53,47.38,8.55"


@pytest.fixture(scope="module")
def built_index(tiny_release, map_image, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "index"
    code = main(
        [
            "index",
            "build",
            "--model",
            str(tiny_release),
            "--map",
            str(map_image),
            "--corners",
            CORNERS,
            "--tile-size",
            "64",
            "--stride",
            "32",
            "--unit",
            "px",
            "--out",
            str(out),
            "--quiet",
            "--shard-size",
            "8",
        ]
    )
    assert code == 0
    return out


def test_build_writes_manifest_with_the_release_identity(built_index, tiny_release):
    manifest = json.loads((built_index / "manifest.json").read_text())
    assert manifest["model"]["identity"] == release_identity(tiny_release)
    assert manifest["model"]["view"] == "satellite"
    assert manifest["model"]["data_config"]["input_size"] == [3, 64, 64]
    assert manifest["index"]["type"] == "flat" and manifest["tiles"]["count"] == 7 * 5
    assert len(list((built_index / "shards").glob("shard-*.npz"))) == 5  # 35 tiles / 8 per shard


def test_localize_map_crops_with_ground_truth(built_index, map_image, tmp_path, capsys):
    # queries: three tiles' exact crops (their true positions known from the corners)
    assert (built_index / "map_tiles" / "tiles.csv").is_file()
    assert len(list((built_index / "map_tiles" / "tiles").glob("*.png"))) == 35
    north, west, south, east = (float(v) for v in CORNERS.split(","))
    source = Image.open(map_image)
    lines = ["path,lat,lon"]
    queries = []
    for col, row in ((0, 0), (96, 64), (192, 128)):
        crop = tmp_path / f"q_{col}_{row}.png"
        source.crop((col, row, col + 64, row + 64)).save(crop)
        lat = north - (row + 32) * (north - south) / 192
        lon = west + (col + 32) * (east - west) / 256
        lines.append(f"{crop.name},{lat!r},{lon!r}")
        queries.append(str(crop))
    (tmp_path / "gt.csv").write_text("\n".join(lines) + "\n")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    code = main(
        [
            "localize",
            "--index",
            str(built_index),
            *queries,
            str(bad),
            "--gt",
            str(tmp_path / "gt.csv"),
            "-k",
            "3",
            "--png",
            str(tmp_path / "png"),
            "--summary",
            str(tmp_path / "summary.json"),
        ]
    )
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines()]
    assert code == 1  # one query failed
    assert [r["ok"] for r in records] == [True, True, True, False]
    assert str(bad) in records[3]["error"] and str(bad) in out.err
    for record in records[:3]:
        # a query identical to a gallery tile finds it: the estimate is that tile's centre or
        # an average with its agreeing neighbours, within one tile spacing of the truth
        assert record["top_k"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert record["top1_error_m"] < 1.0
        assert record["error_m"] < 0.75 * 1100 / 8  # less than the 32 px stride (~137 m)
        assert 0.0 < record["confidence"] <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_with_gt"] == 3 and summary["n_failed"] == 1 and summary["Dis@1"] < 1.0
    assert len(list((tmp_path / "png").glob("*.png"))) == 3


def test_cut_and_info_commands(built_index, map_image, tmp_path, capsys):
    assert (
        main(
            [
                "index",
                "cut",
                "--map",
                str(map_image),
                "--corners",
                CORNERS,
                "--tile-size",
                "96",
                "--unit",
                "px",
                "--out",
                str(tmp_path / "cut"),
                "-q",
            ]
        )
        == 0
    )
    assert "tiles ->" in capsys.readouterr().out
    assert (tmp_path / "cut" / "tiles.csv").read_text().startswith("id,path,lat,lon,north,west,south,east")
    assert main(["index", "info", str(built_index)]) == 0
    info = capsys.readouterr()
    assert "verified (35 tiles)" in info.err  # a note: stdout is for the data
    assert "tiles:   35 (0 skipped)" in info.out and "verified" not in info.out


def test_localize_with_another_model_fails_in_one_line(
    built_index, tiny_release, map_image, tmp_path, capsys
):
    from cvd.factory import load_release
    from cvd.models import save_release

    other = tmp_path / "other_release"
    model, config = load_release(tiny_release / "release")
    config["meta"] = {"note": "released again after the index was built"}  # another identity
    save_release(model, config, other)  # (an edited config.yaml is refused before the index check)
    code = main(["localize", "--index", str(built_index), "--model", str(other), str(map_image)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert (
        f"{built_index / 'manifest.json'}: index was built with model {release_identity(tiny_release)}" in err
    )


def test_localize_detects_a_corrupted_index_file(built_index, map_image, tmp_path, capsys):
    broken = tmp_path / "broken_index"
    shutil.copytree(built_index, broken, ignore=shutil.ignore_patterns("shards", "tiles"))
    data = bytearray((broken / "vectors.faiss").read_bytes())
    data[-5] ^= 0x01
    (broken / "vectors.faiss").write_bytes(bytes(data))
    code = main(["localize", "--index", str(broken), str(map_image)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{broken / 'vectors.faiss'}: file changed or corrupted" in err


def test_index_build_reports_bad_tile_csv_lines(tiny_release, tmp_path, capsys):
    (tmp_path / "tiles.csv").write_text("path,lat,lon\nmissing.png,47,8\nalso.png,x,8\n")
    code = main(
        [
            "index",
            "build",
            "--model",
            str(tiny_release),
            "--tiles",
            str(tmp_path / "tiles.csv"),
            "--out",
            str(tmp_path / "idx"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "line 2: tile image not found" in err and "line 3: column 'lat' is not a number" in err


def test_torchrun_ranks_share_the_build_and_rank0_merges(
    tiny_release, tmp_path, helpers, monkeypatch, capsys
):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 12)
    lines = ["id,path,lat,lon", *(f"{t.id},{t.path},{t.lat},{t.lon}" for t in tiles)]
    (tmp_path / "tiles.csv").write_text("\n".join(lines) + "\n")
    command = [
        "index",
        "build",
        "--model",
        str(tiny_release),
        "--tiles",
        str(tmp_path / "tiles.csv"),
        "--out",
        str(tmp_path / "idx"),
        "--shard-size",
        "4",
        "--wait",
        "5",
        "-q",
    ]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(command) == 0
    assert "rank 1: shards done" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "idx" / "shards").glob("*.npz")) == ["shard-000001.npz"]
    assert not (tmp_path / "idx" / "manifest.json").exists()
    monkeypatch.setenv("RANK", "0")
    assert main(command) == 0
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["tiles"]["count"] == 12 and manifest["build"]["world_size"] == 2


def test_query_folders_are_expanded_in_order(tmp_path):
    from cvd.commands.localize import expand_images

    for name in ("b.jpg", "a.png", "notes.txt", "sub/c.JPEG"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    expanded = expand_images([str(tmp_path), "missing.jpg"])
    assert expanded == [
        str(tmp_path / "a.png"),
        str(tmp_path / "b.jpg"),
        str(tmp_path / "sub" / "c.JPEG"),
        "missing.jpg",
    ]


def test_index_info_json_is_pure_json_on_stdout(built_index):
    # as a script pipes it: `cvd index info --json IDX | python -m json.tool`
    result = subprocess.run(
        [sys.executable, "-m", "cvd", "index", "info", "--json", str(built_index)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((built_index / "manifest.json").read_text())
    assert "verified (35 tiles)" in result.stderr


def test_localize_json_ends_stdout_with_the_summary(built_index, map_image, tmp_path, capsys):
    north, west, south, east = (float(v) for v in CORNERS.split(","))
    query = tmp_path / "q.png"
    Image.open(map_image).crop((96, 64, 160, 128)).save(query)
    lat, lon = north - 96 * (north - south) / 192, west + 128 * (east - west) / 256
    (tmp_path / "gt.csv").write_text(f"path,lat,lon\nq.png,{lat!r},{lon!r}\n")
    command = ["localize", "--index", str(built_index), str(query), "--gt", str(tmp_path / "gt.csv")]
    assert main([*command, "--json"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines()]  # every stdout line is JSON
    assert len(lines) == 2 and lines[0]["ok"] is True
    summary = lines[1]["summary"]
    assert summary["n_queries"] == 1 and summary["n_with_gt"] == 1 and summary["Dis@1"] < 140.0
    assert "Dis@1" not in out.err
    assert main([*command, "--out", str(tmp_path / "q.jsonl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"] == summary  # stdout: the summary alone
    assert main(command) == 0  # without --json: the summary is text for a person, on stderr
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1 and "n_with_gt: 1" in out.err


def test_index_build_errors_are_not_blamed_on_index_type(
    tiny_release, tmp_path, helpers, monkeypatch, capsys
):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 6)
    lines = ["id,path,lat,lon", *(f"{t.id},{t.path},{t.lat},{t.lon}" for t in tiles)]
    (tmp_path / "tiles.csv").write_text("\n".join(lines) + "\n")
    command = ["index", "build", "--model", str(tiny_release), "--tiles", str(tmp_path / "tiles.csv")]
    # an index type that does not suit the gallery is the flag's fault, and says so
    assert main([*command, "--out", str(tmp_path / "a"), "--index-type", "ivfpq", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--index-type ivfpq: ivfpq needs at least" in err
    # a ValueError from elsewhere (here: a RANK outside WORLD_SIZE) says what is wrong, not --index-type
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "3")
    assert main([*command, "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rank 3 outside world of size 2" in err
    assert "--index-type" not in err and "Traceback" not in err


def test_geotiff_without_the_geotiff_extra_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "city.tif").write_bytes(b"II*\x00")
    monkeypatch.setitem(sys.modules, "rasterio", None)  # rasterio not installed
    code = main(["index", "cut", "--map", str(tmp_path / "city.tif"), "--out", str(tmp_path / "cut")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'city.tif'}: reading a GeoTIFF-type map needs the geotiff extra" in err
    assert "pip install 'cvd[geotiff]'" in err


def test_localize_reads_a_16_bit_query_as_its_8_bit_twin(built_index, map_image, tmp_path, capsys):
    # a 16-bit PNG was refused here (and read as all white by training and evaluation): it is
    # decoded by its range, so it localizes exactly as the 8-bit image it was made from
    grey = np.asarray(Image.open(map_image).crop((96, 64, 160, 128)).convert("L"))
    eight = tmp_path / "q8.png"
    Image.fromarray(grey).save(eight)
    sixteen = tmp_path / "q16.png"
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)
    assert Image.open(sixteen).mode == "I;16"
    code = main(["localize", "--index", str(built_index), str(eight), str(sixteen), "-k", "3"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [r["ok"] for r in records] == [True, True]
    assert "16-bit samples scaled to 8 bits" in records[1]["note"]
    assert records[1]["top_k"] == records[0]["top_k"]
    assert (records[1]["lat"], records[1]["lon"]) == (records[0]["lat"], records[0]["lon"])


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (
            ["--corners", "95,8.53,47.38,8.55"],
            "--corners 95,8.53,47.38,8.55: north latitude 95 is outside [-90, 90]",
        ),
        (["--corners", "47.395,8.53,47.38,200"], "east longitude 200 is outside [-180, 180]"),
        (["--corners", "47.38,8.53,47.395,8.55"], "north > south"),
        (["--stride", "0"], "--stride 0: stride must be at least 1 px"),
        (["--stride", "-32"], "--stride -32: stride must be at least 1 px"),
        (["--tile-size", "0"], "--tile-size 0: tile size must be at least 1 px"),
        (["--tile-size", "nan"], "--tile-size nan"),
        (["--resize", "0"], "--resize 0: must be at least 1 px"),
    ],
)
@pytest.mark.parametrize("action", ["cut", "build"])
def test_impossible_map_options_are_refused_before_any_work(
    action, options, named, tiny_release, map_image, tmp_path, capsys
):
    # a latitude of 95 used to cut tiles `localize` then refused, a stride of 0 meant 1 px
    arguments = {"--corners": CORNERS, "--tile-size": "64", "--stride": "32", "--unit": "px"}
    arguments.update(zip(options[::2], options[1::2]))
    flat = [item for pair in arguments.items() for item in pair]
    model = ["--model", str(tiny_release)] if action == "build" else []
    out = tmp_path / "out"
    code = main(["index", action, *model, "--map", str(map_image), *flat, "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and named in err, err
    assert "cvd index: error: " in err and not out.exists()


def _geotiff(path, transform, crs="EPSG:32632"):
    import rasterio

    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 96, 128), dtype=np.uint8)
    with rasterio.open(
        path, "w", driver="GTiff", width=128, height=96, count=3, dtype="uint8", crs=crs, transform=transform
    ) as dataset:
        dataset.write(pixels)
    return path


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::UserWarning")
def test_geotiffs_that_cannot_be_tiled_north_up_are_one_line_errors(tmp_path, capsys):
    pytest.importorskip("rasterio")
    from rasterio.transform import Affine, from_origin

    origin = (465_000.0, 5_250_000.0)
    good = _geotiff(tmp_path / "good.tif", from_origin(*origin, 2.0, 2.0))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    south_up = _geotiff(tmp_path / "south_up.tif", Affine(2.0, 0.0, origin[0], 0.0, 2.0, origin[1] - 192.0))
    rotated = _geotiff(
        tmp_path / "rotated.tif",
        Affine.translation(*origin) * Affine.rotation(30.0) * Affine.scale(2.0, -2.0),
    )
    expected = {
        truncated: "cannot read map pixels",
        south_up: "pixel height is positive (2): the map is stored south-up",
        rotated: "rotation/shear terms",
    }
    for path, reason in expected.items():
        out = tmp_path / f"out_{path.stem}"
        code = main(
            ["index", "cut", "--map", str(path), "--tile-size", "32", "--unit", "px", "--out", str(out)]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"cvd index: error: {path}: ") and reason in err, err
        assert not (out / "tiles.csv").exists() and not list(out.glob("tiles/*"))
    assert (
        main(
            [
                "index",
                "cut",
                "--map",
                str(good),
                "--tile-size",
                "32",
                "--unit",
                "px",
                "--out",
                str(tmp_path / "ok"),
                "-q",
            ]
        )
        == 0
    )
