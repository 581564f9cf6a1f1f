import numpy as np
import pytest
from PIL import Image

from cvd.data import GeoTaggedFolder
from cvd.errors import ConfigError, DatasetLayoutError


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    for name in ("tiles/a.png", "tiles/b.png", "tiles/c.png", "drone/1.jpg", "drone/2.jpg", "drone/3.jpg"):
        _image(tmp_path / name)
    (tmp_path / "images.csv").write_text(
        "path,lat,lon,view\n"
        "tiles/a.png,47.0000,8.0000,satellite\n"
        "tiles/b.png,47.0100,8.0000,satellite\n"
        "tiles/c.png,47.0200,8.0000,satellite\n"
        "drone/1.jpg,47.0002,8.0001,drone\n"  # ~25 m from a
        "drone/2.jpg,47.0195,8.0003,drone\n"  # ~60 m from c
        "drone/3.jpg,47.5000,8.0000,drone\n"  # ~53 km from c
    )
    return tmp_path


def test_queries_take_the_nearest_satellite_location(folder):
    dataset = GeoTaggedFolder(folder, "images.csv")
    pairs = dataset.train_pairs()
    assert [(p.query.name, p.satellite.name) for p in pairs] == [
        ("1.jpg", "a.png"),
        ("2.jpg", "c.png"),
        ("3.jpg", "c.png"),
    ]
    assert pairs[0].gps == (47.0002, 8.0001)
    assert [p.label for p in pairs] == [0, 1, 1]
    (split,) = dataset.eval_splits()
    assert split.name == "drone->satellite" and split.protocol == "university1652"
    assert split.gallery_labels == [0, 1, 2]  # stems a, b, c in sorted order
    assert split.query_labels == [0, 2, 2]


def test_max_distance_leaves_far_queries_out(folder):
    dataset = GeoTaggedFolder(folder, "images.csv", max_distance_m=1000)
    assert [p.query.name for p in dataset.train_pairs()] == ["1.jpg", "2.jpg"]


def test_location_column_wins_and_numeric_ids_are_labels(tmp_path):
    for name in ("s/10.png", "s/20.png", "q/x.jpg"):
        _image(tmp_path / name)
    (tmp_path / "meta.csv").write_text(
        "path,lat,lon,location,view\ns/10.png,1,1,10,satellite\ns/20.png,1,1.5,20,satellite\nq/x.jpg,1,1,20,street\n"
    )
    dataset = GeoTaggedFolder(tmp_path, "meta.csv")
    (split,) = dataset.eval_splits()
    assert split.name == "street->satellite"
    assert split.query_labels == [20] and sorted(split.gallery_labels) == [10, 20]


def test_bad_rows_are_named_by_line_and_column(tmp_path):
    (tmp_path / "bad.csv").write_text(
        "path,lat,lon,view\na.png,north,8,satellite\nb.png,95,8,drone\nc.png,1,2,aerial\n"
    )
    with pytest.raises(DatasetLayoutError) as error:
        GeoTaggedFolder(tmp_path, "bad.csv")
    message = str(error.value)
    assert f"{tmp_path / 'bad.csv'}:2" in message and "'north'" in message
    assert f"{tmp_path / 'bad.csv'}:3" in message and "out of range" in message
    assert f"{tmp_path / 'bad.csv'}:4" in message and "'aerial'" in message


def test_missing_columns_csv_and_images(tmp_path):
    with pytest.raises(DatasetLayoutError) as error:
        GeoTaggedFolder(tmp_path, "nope.csv")
    assert str(tmp_path / "nope.csv") in str(error.value)
    (tmp_path / "cols.csv").write_text("file,lat,lon\nx.png,1,1\n")
    with pytest.raises(DatasetLayoutError, match="lacks column"):
        GeoTaggedFolder(tmp_path, "cols.csv")
    (tmp_path / "ok.csv").write_text("path,lat,lon,view\nmissing.png,1,1,satellite\n")
    with pytest.raises(DatasetLayoutError) as error:
        GeoTaggedFolder(tmp_path, "ok.csv", strict=True)
    assert str(tmp_path / "missing.png") in str(error.value)


def test_no_satellite_rows_is_a_config_error(tmp_path):
    _image(tmp_path / "q.jpg")
    (tmp_path / "q.csv").write_text("path,lat,lon\nq.jpg,1,1\n")
    with pytest.raises(ConfigError, match="satellite"):
        GeoTaggedFolder(tmp_path, "q.csv").eval_splits()
