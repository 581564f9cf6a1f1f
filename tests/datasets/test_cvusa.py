import logging
import math

import pytest

from cvd.data import CVUSA
from cvd.errors import DatasetLayoutError


@pytest.fixture
def cvusa(tmp_path, writers):
    root = tmp_path / "CVUSA"
    writer = writers["cvusa"]
    written = writer.write_cvusa(root, train=range(1, 9), val=range(9, 13), gps=True, polar=True)
    return root, writer, written


def test_pairs_and_labels_follow_the_split_files(cvusa):
    root, _, _ = cvusa
    dataset = CVUSA(root)
    pairs = dataset.train_pairs()
    assert len(pairs) == 8
    assert [p.label for p in pairs] == list(range(8))
    assert pairs[0].satellite == root / "bingmap" / "19" / "0000001.jpg"
    assert pairs[0].query == root / "streetview" / "panos" / "0000001.jpg"
    assert pairs[0].location == "0000001"
    (split,) = dataset.eval_splits()
    assert split.name == "street->satellite" and split.protocol == "cvusa"
    assert split.query_labels == split.gallery_labels == [9, 10, 11, 12]  # the image numbers
    assert [q.view for q in split.queries] == ["street"] * 4


def test_gps_comes_from_all_csv_ground_columns(cvusa):
    root, writer, _ = cvusa
    dataset = CVUSA(root)
    for pair in dataset.train_pairs():
        number = int(pair.location)
        assert pair.gps == pytest.approx(writer.ground_gps(number), abs=1e-12)
    (split,) = dataset.eval_splits()
    assert split.queries[0].gps == pytest.approx(writer.ground_gps(9), abs=1e-12)


def test_without_all_csv_gps_is_none(tmp_path, writers):
    root = tmp_path / "CVUSA"
    writers["cvusa"].write_cvusa(root, gps=False)
    assert all(p.gps is None for p in CVUSA(root).train_pairs())


def test_polar_satellites(cvusa):
    root, _, _ = cvusa
    pairs = CVUSA(root, polar=True).train_pairs()
    assert pairs[0].satellite == root / "polarmap" / "19" / "0000001.png"


def test_missing_image_is_skipped_and_counted_or_strict_error(cvusa, caplog):
    root, _, _ = cvusa
    missing = root / "streetview" / "panos" / "0000003.jpg"
    missing.unlink()
    with caplog.at_level(logging.WARNING, logger="cvd.data"):
        dataset = CVUSA(root)
    assert dataset.missing == [missing]
    assert "1 images named by the split files are missing" in caplog.text
    assert len(dataset.train_pairs()) == 7
    assert "0000003" not in {p.location for p in dataset.train_pairs()}
    with pytest.raises(DatasetLayoutError) as error:
        CVUSA(root, strict=True)
    assert str(missing) in str(error.value)


def test_missing_split_file_and_folder_are_named(cvusa):
    root, _, _ = cvusa
    (root / "splits" / "val-19zl.csv").unlink()
    with pytest.raises(DatasetLayoutError) as error:
        CVUSA(root, polar=False)
    assert str(root / "splits" / "val-19zl.csv") in str(error.value)
    (root / "splits" / "val-19zl.csv").write_text("bingmap/19/0000009.jpg,streetview/panos/0000009.jpg,x\n")
    for image in (root / "polarmap" / "19").iterdir():
        image.unlink()
    (root / "polarmap" / "19").rmdir()
    with pytest.raises(DatasetLayoutError) as error:
        CVUSA(root, polar=True)
    assert str(root / "polarmap" / "19") in str(error.value)


def test_malformed_split_row_names_file_and_line(cvusa):
    root, _, _ = cvusa
    path = root / "splits" / "val-19zl.csv"
    path.write_text("bingmap/19/0000009.jpg,streetview/panos/0000009.jpg,a\nonly-one-column\n")
    with pytest.raises(DatasetLayoutError, match=f"{path}:2"):
        CVUSA(root)


def test_short_all_csv_gives_nan_free_none(cvusa):
    root, _, _ = cvusa
    gps_file = root / "split_locations" / "all.csv"
    gps_file.write_text("\n".join(gps_file.read_text().splitlines()[:5]) + "\n")
    pairs = CVUSA(root).train_pairs()
    assert pairs[4].gps is not None and pairs[5].gps is None
    assert not any(p.gps is not None and math.isnan(p.gps[0]) for p in pairs)
