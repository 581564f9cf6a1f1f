import shutil

import pytest

from cvd.data import SUES200
from cvd.data.sues200 import OFFICIAL_TRAIN_IDS
from cvd.errors import DatasetLayoutError

IDS = [f"{i:04d}" for i in range(1, 9)]  # 0008 is a test id in the official split, the rest train


@pytest.fixture(scope="module")
def raw_root(tmp_path_factory, writers):
    root = tmp_path_factory.mktemp("sues") / "SUES-200-512x512"
    writers["sues200"].write_sues200_raw(root, ids=IDS, altitudes=(150, 300), drone_per_altitude=3)
    return root


def test_official_training_list_is_the_benchmark_120_of_200():
    assert len(OFFICIAL_TRAIN_IDS) == len(set(OFFICIAL_TRAIN_IDS)) == 120
    assert all(len(x) == 4 and 1 <= int(x) <= 200 for x in OFFICIAL_TRAIN_IDS)
    # not simply the first 120 ids: the benchmark's split script drew them from an unsorted glob
    assert list(OFFICIAL_TRAIN_IDS) != [f"{i:04d}" for i in range(1, 121)]


def test_raw_layout_with_configured_training_ids(raw_root):
    dataset = SUES200(
        raw_root, altitude=150, layout="raw", train_ids=["0001", "0002", "0003", "0004", "0005"]
    )
    assert dataset.layout == "raw"
    assert dataset.test_ids == ["0006", "0007", "0008"]
    pairs = dataset.train_pairs()
    assert len(pairs) == 5 * 3
    for pair in pairs:
        assert pair.satellite == raw_root / "satellite-view" / pair.location / "0.png"
        assert pair.query.parent == raw_root / "drone_view_512" / pair.location / "150"
    assert sorted({p.label for p in pairs}) == [0, 1, 2, 3, 4]


def test_raw_layout_eval_both_directions_gallery_holds_all_locations(raw_root):
    dataset = SUES200(raw_root, altitude=150, train_ids=["0001", "0002", "0003", "0004", "0005"])
    d2s, s2d = dataset.eval_splits()
    assert (d2s.name, s2d.name) == ("drone->satellite/150m", "satellite->drone/150m")
    assert d2s.protocol == "sues200"
    assert len(d2s.queries) == 3 * 3 and {q.label for q in d2s.queries} == {6, 7, 8}
    assert sorted(d2s.gallery_labels) == list(
        range(1, 9)
    )  # all 200 in the benchmark, train ids as distractors
    assert len(s2d.queries) == 3
    assert len(s2d.gallery) == 8 * 3
    assert all(r.meta["altitude"] == 150 for r in d2s.queries + s2d.gallery)


def test_default_is_the_official_split_and_a_partial_tree_says_what_to_do(raw_root):
    with pytest.raises(DatasetLayoutError, match="train_ids") as error:
        SUES200(raw_root, altitude=150)
    message = str(error.value)
    assert str(raw_root / "satellite-view" / "0200") in message  # an official training id not on disk
    assert str(raw_root / "satellite-view" / "0008") not in message  # 0008 is a test id


def test_train_fraction_takes_first_sorted_ids(raw_root):
    dataset = SUES200(raw_root, altitude=300, train_fraction=0.75)
    assert dataset.train_ids == IDS[:6]
    assert dataset.test_ids == IDS[6:]
    assert all(p.query.parent.name == "300" for p in dataset.train_pairs())


def test_several_altitudes_share_location_labels(raw_root):
    dataset = SUES200(raw_root, altitude=[150, 300], train_fraction=0.5)
    pairs = dataset.train_pairs()
    assert len(pairs) == 4 * 3 * 2
    by_location = {}
    for pair in pairs:
        by_location.setdefault(pair.location, set()).add(pair.label)
    assert all(len(labels) == 1 for labels in by_location.values())
    names = [s.name for s in dataset.eval_splits()]
    assert names == [
        "drone->satellite/150m",
        "satellite->drone/150m",
        "drone->satellite/300m",
        "satellite->drone/300m",
    ]


def test_missing_altitude_folder_is_named(raw_root):
    with pytest.raises(DatasetLayoutError) as error:
        SUES200(raw_root, altitude=200, train_fraction=0.5)  # the fake tree has 150 and 300 only
    assert str(raw_root / "drone_view_512" / "0001" / "200") in str(error.value)


def test_invalid_altitude():
    with pytest.raises(ValueError, match="altitude"):
        SUES200("/nowhere", altitude=175)


@pytest.mark.parametrize("lowercase", [False, True])
def test_split_layout(tmp_path, writers, lowercase):
    root = tmp_path / "SUES-200"
    writers["sues200"].write_sues200_split(
        root,
        train_ids=["0001", "0002", "0003"],
        test_ids=["0004", "0005"],
        altitudes=(250,),
        lowercase=lowercase,
    )
    dataset = SUES200(root, altitude=250)
    assert dataset.layout == "split"
    assert dataset.train_ids == ["0001", "0002", "0003"] and dataset.test_ids == ["0004", "0005"]
    assert len(dataset.train_pairs()) == 3 * 3
    d2s, s2d = dataset.eval_splits()
    assert len(d2s.queries) == 2 * 3 and len(d2s.gallery) == 5
    assert len(s2d.queries) == 2 and len(s2d.gallery) == 5 * 3
    train_dir = "train" if lowercase else "Training"
    assert all(p.query.parts[-5] == train_dir for p in dataset.train_pairs())


def test_split_layout_missing_folders_named(tmp_path, writers):
    root = tmp_path / "SUES-200"
    writers["sues200"].write_sues200_split(root, altitudes=(150,))
    shutil.rmtree(root / "Testing" / "150" / "gallery_drone")
    with pytest.raises(DatasetLayoutError) as error:
        SUES200(root, altitude=150)
    assert str(root / "Testing" / "150" / "gallery_drone") in str(error.value)
    with pytest.raises(DatasetLayoutError) as error:
        SUES200(root, altitude=200)
    assert str(root / "Training" / "200" / "drone") in str(error.value)


def test_neither_layout(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DatasetLayoutError, match="neither the raw layout nor the split layout") as error:
        SUES200(tmp_path)
    assert str(tmp_path / "drone_view_512") in str(error.value)


def test_asking_for_the_other_layout_gets_a_hint(raw_root, tmp_path, writers):
    with pytest.raises(DatasetLayoutError, match="use layout='raw'"):
        SUES200(raw_root, altitude=150, layout="split")
    writers["sues200"].write_sues200_split(tmp_path, altitudes=(150,))
    with pytest.raises(DatasetLayoutError, match="use layout='split'"):
        SUES200(tmp_path, altitude=150, layout="raw")


def test_gallery_variants_official_ranks_distractors_sample4geo_junks_them(tmp_path, writers):
    from cvd.data import JUNK_LABEL
    from cvd.errors import OptionError
    from cvd.evaluation.results import summary_line

    root = tmp_path / "SUES-200"
    writers["sues200"].write_sues200_split(
        root, train_ids=["0001", "0002", "0003"], test_ids=["0004", "0005"]
    )
    dataset = SUES200(root, altitude=150)
    official_d2s, _ = dataset.eval_splits()
    assert official_d2s.gallery_variant == "official"
    assert sorted(r.label for r in official_d2s.gallery) == [1, 2, 3, 4, 5]  # training ids rank too
    d2s, s2d = dataset.eval_splits(gallery_variant="sample4geo")
    assert d2s.gallery_variant == s2d.gallery_variant == "sample4geo"
    # only the two test locations have queries: the three training ones are junk in both galleries
    assert sorted(r.label for r in d2s.gallery) == [JUNK_LABEL] * 3 + [4, 5]
    assert {r.label for r in s2d.gallery if r.location in ("0001", "0002", "0003")} == {JUNK_LABEL}
    result = {"protocol": "sues200", "split": d2s.name, "gallery_variant": d2s.gallery_variant}
    result.update(num_queries=6, num_gallery=5, flip_tta=False)
    assert "gallery=sample4geo" in summary_line(result)
    with pytest.raises(OptionError, match="gallery_variant"):
        dataset.eval_splits(gallery_variant="all")
