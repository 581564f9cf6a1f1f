import logging

import numpy as np
import pytest

from cvd.data import CVACT, utm_to_latlon
from cvd.errors import DatasetLayoutError


@pytest.fixture
def cvact(tmp_path, writers):
    root = tmp_path / "CVACT"
    writer = writers["cvact"]
    written = writer.write_cvact(root, n=12, train=(2, 4, 6, 8), val=(1, 3), test=(10, 12))
    return root, writer, written


def test_indices_are_one_based(cvact):
    root, _, written = cvact
    dataset = CVACT(root)
    pairs = dataset.train_pairs()
    ids = written["ids"]
    # trainInd (2, 4, 6, 8) are MATLAB rows: panoIds[1], [3], [5], [7] in 0-based Python
    assert [p.location for p in pairs] == [ids[1], ids[3], ids[5], ids[7]]
    assert [p.label for p in pairs] == [0, 1, 2, 3]
    assert pairs[0].query == root / "ANU_data_small" / "streetview" / f"{ids[1]}_grdView.jpg"
    assert pairs[0].satellite == root / "ANU_data_small" / "satview_polish" / f"{ids[1]}_satView_polish.jpg"
    (split,) = dataset.eval_splits()
    assert split.protocol == "cvact" and split.name == "street->satellite"
    assert split.query_labels == [1, 3]  # the 1-based .mat rows
    assert [q.location for q in split.queries] == [ids[0], ids[2]]


def test_test_split_reads_anu_data_test(cvact):
    root, _, written = cvact
    (split,) = CVACT(root, split="test").eval_splits()
    assert split.gallery_labels == [10, 12]
    assert split.queries[0].path == root / "ANU_data_test" / "streetview" / f"{written['ids'][9]}_grdView.jpg"


def test_gps_matches_an_independent_utm_inverse(cvact, refs):
    root, writer, _ = cvact
    pairs = CVACT(root).train_pairs()
    for pair, row in zip(pairs, (1, 3, 5, 7)):
        easting, northing = writer.utm_of(row)
        lat, lon = refs.utm_south_to_latlon(easting, northing, zone=55)
        assert pair.gps == pytest.approx((lat, lon), abs=1e-7)  # ~1 cm
        assert -35.4 < pair.gps[0] < -35.2 and 149.0 < pair.gps[1] < 149.2  # Canberra


def test_utm_point_on_central_meridian(refs):
    # On zone 55's central meridian (147 E) northing = 10,000,000 - k0 * meridian arc: lat -35 exactly.
    northing = 10_000_000.0 - 0.9996 * refs.meridian_arc(35.0)
    ((lat, lon),) = utm_to_latlon(np.asarray([[500_000.0, northing]]))
    assert lat == pytest.approx(-35.0, abs=1e-8)
    assert lon == pytest.approx(147.0, abs=1e-10)


def test_northing_first_columns_are_detected(tmp_path, writers, refs):
    root = tmp_path / "CVACT"
    writer = writers["cvact"]
    writer.write_cvact(root, northing_first=True)
    pair = CVACT(root).train_pairs()[0]
    expected = refs.utm_south_to_latlon(*writer.utm_of(0), zone=55)
    assert pair.gps == pytest.approx(expected, abs=1e-6)
    wrong = CVACT(root, utm_columns="easting_northing").train_pairs()[0]
    assert not np.allclose(wrong.gps, expected, atol=1e-3)


def test_missing_images_are_skipped_and_counted_or_strict_error(cvact, caplog):
    root, _, written = cvact
    gone = root / "ANU_data_small" / "satview_polish" / f"{written['ids'][3]}_satView_polish.jpg"
    gone.unlink()
    with caplog.at_level(logging.WARNING, logger="cvd.data"):
        dataset = CVACT(root)
    assert dataset.missing == [gone]
    assert "CVACT: 1 images" in caplog.text
    assert written["ids"][3] not in {p.location for p in dataset.train_pairs()}
    assert len(dataset.train_pairs()) == 3
    with pytest.raises(DatasetLayoutError) as error:
        CVACT(root, strict=True)
    assert str(gone) in str(error.value)


def test_zero_based_index_file_is_reported(tmp_path, writers):
    root = tmp_path / "CVACT"
    writers["cvact"].write_cvact(root, train=(0, 1, 2))
    with pytest.raises(DatasetLayoutError, match="1-based") as error:
        CVACT(root)
    assert "trainSet.trainInd" in str(error.value) and str(root / "ACT_data.mat") in str(error.value)


def test_missing_mat_and_test_folders_are_named(cvact):
    root, _, _ = cvact
    (root / "ACT_data.mat").unlink()
    with pytest.raises(DatasetLayoutError) as error:
        CVACT(root, split="test")
    assert str(root / "ACT_data.mat") in str(error.value)


def test_missing_test_folder_only_matters_for_the_test_split(cvact):
    root, _, _ = cvact
    for folder in ("streetview", "satview_polish"):
        for image in (root / "ANU_data_test" / folder).iterdir():
            image.unlink()
        (root / "ANU_data_test" / folder).rmdir()
    assert len(CVACT(root, split="val").eval_splits()[0].queries) == 2
    with pytest.raises(DatasetLayoutError) as error:
        CVACT(root, split="test")
    assert str(root / "ANU_data_test" / "satview_polish") in str(error.value)
