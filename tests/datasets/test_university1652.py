import shutil

import pytest

from cvd.data import JUNK_LABEL, University1652
from cvd.errors import DatasetLayoutError


@pytest.fixture(scope="module")
def tree(tmp_path_factory, writers):
    root = tmp_path_factory.mktemp("u1652") / "University-Release"
    ids = writers["university1652"].write_university1652(
        root, n_train=4, n_test=7, n_distractors=3, drone_per_building=3, street_per_building=2
    )
    return root, ids


def test_training_pairs_pair_each_drone_image_with_its_building_satellite(tree):
    root, _ = tree
    pairs = University1652(root).train_pairs()
    assert len(pairs) == 4 * 3
    for pair in pairs:
        assert pair.query.parent.name == pair.location
        assert pair.satellite == root / "train" / "satellite" / pair.location / f"{pair.location}.jpg"
        assert pair.query.parent.parent == root / "train" / "drone"
    # contiguous labels in building order: 0001 -> 0, ..., 0004 -> 3
    assert {p.location: p.label for p in pairs} == {"0001": 0, "0002": 1, "0003": 2, "0004": 3}
    assert all(p.gps is None for p in pairs)


def test_official_gallery_ranks_true_and_distractor_buildings(tree):
    root, ids = tree
    drone_to_sat, sat_to_drone = University1652(root).eval_splits("official")
    assert drone_to_sat.name == "drone->satellite" and drone_to_sat.gallery_variant == "official"
    assert drone_to_sat.protocol == "university1652"
    assert len(drone_to_sat.queries) == 7 * 3  # every drone image of a test building is a query
    assert len(drone_to_sat.gallery) == 7 + 3  # 951 = 701 + 250, scaled down
    assert sorted(drone_to_sat.gallery_labels) == sorted(int(x) for x in ids["test"] + ids["distractors"])
    assert JUNK_LABEL not in drone_to_sat.gallery_labels
    assert {q.label for q in drone_to_sat.queries} == {int(x) for x in ids["test"]}
    assert all(q.view == "drone" for q in drone_to_sat.queries)
    assert all(g.view == "satellite" for g in drone_to_sat.gallery)
    # satellite -> drone: one satellite query per test building, ~54 (here 3) true drone matches each
    assert len(sat_to_drone.queries) == 7
    assert len(sat_to_drone.gallery) == (7 + 3) * 3
    assert sat_to_drone.gallery_labels.count(int(ids["test"][0])) == 3


def test_sample4geo_gallery_marks_buildings_without_query_as_junk(tree):
    root, ids = tree
    drone_to_sat, sat_to_drone = University1652(root).eval_splits("sample4geo")
    labels = drone_to_sat.gallery_labels
    assert len(labels) == 10
    assert labels.count(JUNK_LABEL) == 3  # the distractors: 951 - 701 = 250, scaled down
    assert len([label for label in labels if label != JUNK_LABEL]) == 7  # 701 ranked
    junk_locations = {g.location for g in drone_to_sat.gallery if g.label == JUNK_LABEL}
    assert junk_locations == set(ids["distractors"])
    assert sat_to_drone.gallery_labels.count(JUNK_LABEL) == 3 * 3


def test_both_variants_at_once(tree):
    root, _ = tree
    splits = University1652(root).eval_splits(["official", "sample4geo"])
    assert [(s.name, s.gallery_variant) for s in splits] == [
        ("drone->satellite", "official"),
        ("satellite->drone", "official"),
        ("drone->satellite", "sample4geo"),
        ("satellite->drone", "sample4geo"),
    ]
    with pytest.raises(ValueError, match="gallery_variant"):
        University1652(root).eval_splits("all951")


def test_street_view_option(tree):
    root, _ = tree
    dataset = University1652(root, query_view="street")
    assert len(dataset.train_pairs()) == 4 * 2
    street_to_sat, sat_to_street = dataset.eval_splits()
    assert street_to_sat.name == "street->satellite"
    assert len(street_to_sat.queries) == 7 * 2
    assert all(q.view == "street" for q in street_to_sat.queries)
    assert len(sat_to_street.gallery) == 10 * 2


def test_missing_folders_are_all_named_with_root_and_expected_tree(tmp_path, writers):
    root = tmp_path / "University-Release"
    writers["university1652"].write_university1652(root, n_train=2, n_test=2, n_distractors=1)
    shutil.rmtree(root / "test" / "gallery_satellite")
    shutil.rmtree(root / "train" / "drone")
    with pytest.raises(DatasetLayoutError) as error:
        University1652(root)
    message = str(error.value)
    assert str(root / "test" / "gallery_satellite") in message
    assert str(root / "train" / "drone") in message
    assert "Missing (2)" in message
    assert f"root {root}" in message
    assert "test/query_drone/<id>/image-NN.jpeg" in message  # the expected tree


def test_empty_class_folder_is_an_error_not_an_empty_dataset(tmp_path, writers):
    root = tmp_path / "University-Release"
    writers["university1652"].write_university1652(root, n_train=2, n_test=2, n_distractors=1)
    empty = root / "test" / "query_drone" / "0101"
    for image in empty.iterdir():
        image.unlink()
    (empty / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetLayoutError, match="Empty folders") as error:
        University1652(root)
    assert str(empty) in str(error.value)


def test_root_one_level_too_high_or_too_low_gets_a_hint(tmp_path, writers):
    root = tmp_path / "University-Release"
    writers["university1652"].write_university1652(root, n_train=2, n_test=2, n_distractors=1)
    with pytest.raises(DatasetLayoutError, match="one level lower") as error:
        University1652(tmp_path)
    assert f"Hint: {root} holds the expected folders" in str(error.value)
    with pytest.raises(DatasetLayoutError, match="one level higher") as error:
        University1652(root / "train")
    assert f"Hint: {root} holds the expected folders" in str(error.value)


def test_root_that_does_not_exist(tmp_path):
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        University1652(tmp_path / "nowhere")


def test_building_with_one_training_view_is_skipped_or_strict_error(tmp_path, writers):
    root = tmp_path / "University-Release"
    writers["university1652"].write_university1652(root, n_train=3, n_test=2, n_distractors=1)
    shutil.rmtree(root / "train" / "satellite" / "0002")
    pairs = University1652(root).train_pairs()
    assert {p.location for p in pairs} == {"0001", "0003"}
    assert {p.label for p in pairs} == {0, 1}
    with pytest.raises(DatasetLayoutError) as error:
        University1652(root, strict=True)
    assert str(root / "train" / "satellite" / "0002") in str(error.value)


def test_non_numeric_building_folder_is_named(tmp_path, writers):
    root = tmp_path / "University-Release"
    writers["university1652"].write_university1652(root, n_train=2, n_test=2, n_distractors=1)
    shutil.copytree(root / "test" / "query_drone" / "0101", root / "test" / "query_drone" / "copy")
    with pytest.raises(DatasetLayoutError, match="not a numeric location id") as error:
        University1652(root)
    assert str(root / "test" / "query_drone" / "copy") in str(error.value)
