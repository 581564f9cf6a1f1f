import numpy as np
import pytest
import torch
from PIL import Image

from cvd.data import (
    CVUSA,
    DATASETS,
    SUES200,
    GPSNeighbourSampler,
    LayoutCheck,
    UniqueLocationSampler,
    build_dataset,
    build_pair_transform,
    build_sampler,
)
from cvd.data.transforms import build_eval_transform
from cvd.errors import ConfigError, DatasetLayoutError


def test_registry_names_every_benchmark():
    assert set(DATASETS) == {"university1652", "sues200", "cvusa", "cvact", "geotagged"}


def test_build_dataset(tmp_path, writers):
    writers["cvusa"].write_cvusa(tmp_path / "CVUSA")
    assert isinstance(build_dataset("cvusa", root=tmp_path / "CVUSA"), CVUSA)
    with pytest.raises(ConfigError, match=r"unknown dataset 'cvusb'.*cvusa"):
        build_dataset("cvusb", root=tmp_path)
    with pytest.raises(ConfigError, match="cvusa"):
        build_dataset("cvusa", root=tmp_path / "CVUSA", polarised=True)


def test_lowercase_folder_gets_a_letter_case_hint(tmp_path, writers):
    writers["sues200"].write_sues200_split(tmp_path, altitudes=(150,))
    (tmp_path / "Training").rename(tmp_path / "training")
    (tmp_path / "Testing").rename(tmp_path / "testing")
    with pytest.raises(DatasetLayoutError) as error:
        SUES200(tmp_path, altitude=150, layout="split")
    message = str(error.value)
    assert f"{tmp_path / 'training'} exists but the layout names it 'Training'" in message
    assert str(tmp_path / "Training" / "150" / "drone") in message


def test_layout_check_lists_every_problem_at_once(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "0001").mkdir()
    check = LayoutCheck("Demo", tmp_path, "a/<id>/*.jpg\nb.csv")
    classes = check.class_folders(check.require_dir("a"))
    images = check.images(classes["0001"])
    check.require_file("b.csv")
    check.require_dir("c")
    assert images == []
    with pytest.raises(DatasetLayoutError) as error:
        check.raise_if_problems()
    message = str(error.value)
    for path in (tmp_path / "b.csv", tmp_path / "c", tmp_path / "a" / "0001"):
        assert str(path) in message
    assert "a/<id>/*.jpg" in message


def test_build_sampler_by_config_name():
    labels = list(range(16))
    assert isinstance(build_sampler("location_shuffle", labels, 4, seed=1), UniqueLocationSampler)
    gps = np.stack([np.linspace(0, 1, 16), np.zeros(16)], axis=1)
    sampler = build_sampler("gps", labels, 4, gps=gps, neighbour_select=4, neighbour_range=6)
    assert isinstance(sampler, GPSNeighbourSampler)
    with pytest.raises(ConfigError, match="not one of"):
        build_sampler("hardest", labels, 4)
    with pytest.raises(ConfigError, match="sampler_options"):
        build_sampler("location_shuffle", labels, 4, neighbours=3)
    with pytest.raises(ConfigError, match="neighbour_range"):
        build_sampler("similarity", labels, 4, neighbours=64)
    with pytest.raises(ConfigError, match="distinct locations"):
        build_sampler("location_shuffle", labels, 32)


DATA_CONFIG = {"input_size": (3, 8, 8), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


def test_config_driven_transforms():
    config = {"data": {"query_size": [4, 8], "satellite_size": [6, 6], "augment": {"flip_prob": 1.0}}}
    query = Image.fromarray(np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3) * 2)
    satellite = Image.new("RGB", (6, 6), (255, 255, 255))
    q, s = build_pair_transform(config, DATA_CONFIG)(query, satellite)
    assert q.shape == (3, 4, 8) and s.shape == (3, 6, 6)
    plain = build_eval_transform(config, DATA_CONFIG, "drone")(query)
    assert torch.allclose(q, plain.flip(-1))  # flipped (flip_prob 1), same resize and normalisation
    assert torch.allclose(s, torch.ones(3, 6, 6))  # (1 - 0.5) / 0.5
    q_eval, _ = build_pair_transform(config, DATA_CONFIG, training=False)(query, satellite)
    assert torch.allclose(q_eval, plain)
    with pytest.raises(ConfigError, match="unknown option"):
        build_pair_transform({"data": {"augment": {"flip": 1}}}, DATA_CONFIG)
    with pytest.raises(ConfigError, match="polar"):
        build_pair_transform({"data": {"augment": {"polar": True, "rotate_prob": 0.5}}}, DATA_CONFIG)
    polar = build_eval_transform(
        {"data": {"satellite_size": [4, 16], "augment": {"polar": True}}}, DATA_CONFIG, "satellite"
    )
    assert polar(satellite).shape == (3, 4, 16)


def test_records_datasets_and_samplers_pickle_for_spawned_workers(tmp_path, writers):
    import pickle

    from cvd.data import ImageDataset, PairDataset, University1652

    root = tmp_path / "University-Release"
    writers["university1652"].write_university1652(root, n_train=3, n_test=2, n_distractors=1)
    dataset = University1652(root)
    split = dataset.eval_splits("sample4geo")[0]
    restored = pickle.loads(pickle.dumps(split))
    assert restored == split
    assert restored.gallery[0].meta == {"folder": "test/gallery_satellite"}
    pairs = dataset.train_pairs()
    for obj in (ImageDataset(split.queries), PairDataset(pairs), UniqueLocationSampler(pairs, 3)):
        assert len(pickle.loads(pickle.dumps(obj))) == len(obj)
