"""`cvd synth` / `cvd synth preview` end to end, option errors, and window consistency of the world."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cvd.cli import main
from cvd.data.synthetic import Material, World
from cvd.data.synthetic.options import SynthOptions
from cvd.data.synthetic.preview import TILE


def test_cli_writes_a_dataset_and_a_contact_sheet(tmp_path, capsys):
    out = tmp_path / "cvusa"
    code = main([
        "synth", "--layout", "cvusa", "--locations", "3", "--size", "32", "--seed", "1", "--out", str(out),
        "--no-progress", "--workers", "1", "--set", "satellite_extent=60", "--set", "max_view_distance=200",
    ])  # fmt: skip
    assert code == 0
    assert (out / "bingmap" / "19" / "0000001.jpg").is_file()
    assert (out / "splits" / "val-19zl.csv").read_text().count("\n") == 1
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "preview", str(out), "--out", str(sheet), "--locations", "2"]) == 0
    image = Image.open(sheet)
    # per location: satellite + one rendered drone view per altitude (4), then the panorama row
    assert image.width == 5 * TILE
    assert image.height > 2 * TILE
    assert str(sheet) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--set", "satellite_extent=-5"], "satellite_extent"),
        (["--set", "nonsense=1"], "nonsense"),
        (["--set", "no_equals_sign"], "OPTION=VALUE"),
        (["--locations", "1"], "--locations"),
        (["--set", "altitudes=abc"], "altitudes"),
        (["--set", "jpeg_quality=abc"], "jpeg_quality"),
        (["--set", "street_views=maybe"], "street_views"),
        (["--set", "drone_pitch_deg=50"], "drone_pitch_deg"),
    ],
)
def test_bad_options_fail_with_one_line_naming_the_field(tmp_path, capsys, arguments, named):
    code = main(["synth", "--out", str(tmp_path / "x"), "--no-progress", *arguments])
    assert code == 2
    error = capsys.readouterr().err
    assert named in error and "Traceback" not in error


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ({"street_views": "false"}, ("street_views", False)),  # as `--set street_views=false` sends it
        ({"street_views": "true"}, ("street_views", True)),
        ({"altitudes": 150}, ("altitudes", (150.0,))),  # one value of a list option
        ({"altitudes": "150,200"}, ("altitudes", (150.0, 200.0))),
        ({"drone_pitch_deg": [50, "60"]}, ("drone_pitch_deg", (50.0, 60.0))),
        ({"distractors": "none"}, ("distractors", None)),
        ({"jpeg_quality": 85.0}, ("jpeg_quality", 85)),
    ],
)
def test_option_values_take_their_field_type(option, expected):
    name, value = expected
    if isinstance(option.get("altitudes"), str):  # the CLI splits lists on commas before this
        option = {"altitudes": tuple(option["altitudes"].split(","))}
    got = getattr(SynthOptions().replace(**option), name)
    assert got == value and type(got) is type(value)


def test_preview_of_a_folder_without_metadata_names_the_file(tmp_path, capsys):
    assert main(["synth", "preview", str(tmp_path)]) == 2
    assert "cvd_synthetic.json" in capsys.readouterr().err


def test_windows_agree_with_each_other_cell_for_cell():
    """A cell has the same content whichever window (or cached chunk) it is read through."""
    world = World(11, SynthOptions())
    big = world.window(-150.0, -90.0, 150.0, 90.0)
    small = World(11, SynthOptions()).rasterize(-40.0, -30.0, 60.0, 50.0)
    # cells of `small` inside `big`: offsets in whole cells (both snap to the 0.5 m lattice)
    di = round((small.x0 - big.x0) / big.cell)
    dj = round((small.y0 - big.y0) / big.cell)
    ny, nx = small.shape
    assert np.array_equal(big.height[dj : dj + ny, di : di + nx], small.height)
    assert np.array_equal(big.material[dj : dj + ny, di : di + nx], small.material)
    assert np.allclose(big.albedo[dj : dj + ny, di : di + nx], small.albedo)
    # and the world holds a town: roads, buildings, vegetation (a wider look, at 2 m cells)
    town = world.window(-400.0, -400.0, 400.0, 400.0, cell=2.0)
    kinds = set(np.unique(town.material).tolist())
    assert {Material.ROAD, Material.ROOF, Material.TREE} <= kinds
    assert kinds & {Material.GRASS, Material.FIELD}
    assert town.height.max() - np.median(town.height) > 8.0


def test_noise_is_the_same_function_on_grids_at_points_and_in_plain_python():
    """Windows sample the noise on grids, objects at single points: all must agree, or a building
    would float above (or sink into) the terrain drawn around it."""
    from cvd.data.synthetic.noise import fbm, fbm_scalar, grid_fbm

    xs = np.linspace(-310.3, 95.7, 37)[None, :]
    ys = np.linspace(-80.1, 400.9, 29)[:, None]
    grid = grid_fbm(xs, ys, 450.0, 5, 1, 2)
    points = fbm(xs + 0 * ys, ys + 0 * xs, 450.0, 5, 1, octaves=2)
    assert np.allclose(grid, points, atol=1e-5)
    for j, i in ((0, 0), (7, 30), (28, 36)):
        assert fbm_scalar(float(xs[0, i]), float(ys[j, 0]), 450.0, 5, 1, octaves=2) == pytest.approx(
            float(points[j, i]), abs=1e-5
        )
    assert points.min() >= 0.0 and points.max() < 1.0 and points.std() > 0.02


def test_fractal_sum_halves_scale_and_weight_per_octave_and_normalises():
    from cvd.data.synthetic.noise import fractal_sum

    calls = []

    def octave(scale: float, salt: int) -> float:
        calls.append((scale, salt))
        return scale

    # weights 1, 1/2, 1/4 on scales 80, 40, 20: (80 + 20 + 5) / 1.75 = 60
    assert fractal_sum(octave, 80.0, 2, 3) == pytest.approx(60.0)
    assert calls == [(80.0, 62), (40.0, 63), (20.0, 64)]  # salt * 31 + octave
    assert fractal_sum(lambda scale, salt: 0.25, 9.0, 0, 4) == pytest.approx(0.25)


def test_a_damaged_dataset_is_repaired_not_reused_as_is(tmp_path, capsys):
    # A deleted and a truncated image used to be reused as is: `cvd synth` said nothing and the
    # loaders then skipped or choked on them. The files are checked against the metadata.
    import json

    out = tmp_path / "u1652"
    command = [
        "synth", "--layout", "university1652", "--locations", "4", "--views-per-location", "2",
        "--size", "32", "--seed", "7", "--out", str(out), "--no-progress", "--workers", "1",
        "--set", "satellite_extent=60", "--set", "max_view_distance=200",
    ]  # fmt: skip

    def files() -> dict[str, bytes]:
        return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.jp*g"))}

    assert main(command) == 0
    complete = files()
    metadata = json.loads((out / "cvd_synthetic.json").read_text())
    assert set(complete) <= set(metadata["files"])
    deleted = out / "train" / "drone" / "0001" / "image-01.jpeg"
    truncated = out / "test" / "gallery_satellite" / "0004" / "0004.jpg"
    deleted.unlink()
    data = truncated.read_bytes()
    truncated.unlink()  # (a fresh file: the hard-linked query copy stays intact)
    truncated.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(command) == 0
    err = capsys.readouterr().err
    assert (
        "2 file(s) missing or damaged" in err
        and "regenerating location(s) 0001, 0004, keeping the others" in err
    )
    assert (
        f"(first: test/gallery_satellite/0004/0004.jpg: {len(data) // 2} bytes, {len(data)} recorded)" in err
    )
    assert files() == complete  # rendered again byte for byte
    assert main(command) == 0 and capsys.readouterr().err == ""  # complete: reused silently

    # a dataset written before sizes were recorded: its images are decoded instead
    metadata = json.loads((out / "cvd_synthetic.json").read_text())
    del metadata["files"]
    (out / "cvd_synthetic.json").write_text(json.dumps(metadata))
    truncated.unlink()
    truncated.write_bytes(data[: len(data) // 2])
    assert main(command) == 0
    assert "0004.jpg: does not decode); regenerating location(s) 0004" in capsys.readouterr().err
    assert files() == complete and "files" in json.loads((out / "cvd_synthetic.json").read_text())

    # when a location cannot be rendered to the recorded bytes, the whole dataset is made again
    metadata = json.loads((out / "cvd_synthetic.json").read_text())
    metadata["files"]["test/gallery_satellite/0004/0004.jpg"] += 1
    (out / "cvd_synthetic.json").write_text(json.dumps(metadata))
    assert main(command) == 0
    assert "regenerating the whole dataset" in capsys.readouterr().err
    assert files() == complete
    assert main(command) == 0 and capsys.readouterr().err == ""
