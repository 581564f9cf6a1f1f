import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cvd.data import ImageDataset, ImageRecord, PairDataset, PairRecord, find_unreadable, load_rgb
from cvd.errors import ImageReadError


def _write_jpeg(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path, format="JPEG")
    return path


@pytest.fixture
def images(tmp_path):
    good = [_write_jpeg(tmp_path / f"good{i}.jpg", i) for i in range(5)]
    truncated = _write_jpeg(tmp_path / "truncated.jpg", 99)
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("not a jpeg")
    return good, [truncated, empty, text]


def _records(paths):
    return [ImageRecord(path, label=i, location=f"{i:04d}", view="satellite") for i, path in enumerate(paths)]


def test_load_rgb_names_the_path(images):
    good, bad = images
    assert load_rgb(good[0]).mode == "RGB"
    for path in bad:
        with pytest.raises(ImageReadError, match=str(path)):
            load_rgb(path)


def test_corrupt_image_is_reported_by_path_and_skipped(images, caplog):
    good, bad = images
    dataset = ImageDataset(_records([good[0], bad[0], good[1]]))
    with caplog.at_level(logging.WARNING, logger="cvd.data"):
        items = [dataset[i] for i in range(3)]
    assert f"skipping unreadable image {bad[0]}" in caplog.text
    assert items[1] == {"index": 1, "skipped": str(bad[0])}
    assert dataset.skipped == [bad[0]]
    batch = dataset.collate_fn(items)
    assert batch["index"].tolist() == [0, 2]
    assert batch["label"].tolist() == [0, 2]
    assert batch["image"].shape == (2, 3, 32, 32)
    assert batch["skipped"] == [str(bad[0])] and batch["skipped_index"] == [1]


def test_strict_raises_on_the_first_corrupt_image(images):
    good, bad = images
    dataset = ImageDataset(_records([good[0], bad[1]]), strict=True)
    assert dataset[0]["label"] == 0
    with pytest.raises(ImageReadError, match=str(bad[1])):
        dataset[1]


def test_skips_travel_from_worker_processes_with_the_batches(images):
    good, bad = images
    paths = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3]]
    dataset = ImageDataset(_records(paths))
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=dataset.collate_fn)
    kept, skipped = [], 0
    for batch in loader:
        kept += batch["index"].tolist()
        # labels travel with the kept items, so evaluation drops a skipped item from its list consistently
        assert batch.get("label", torch.empty(0)).tolist() == batch["index"].tolist()
        skipped += dataset.update_skipped(batch)
    assert kept == [0, 2, 4, 6]
    assert skipped == 3
    assert sorted(dataset.skipped) == sorted(bad)


def test_verify_up_front_removes_unreadable_records(images):
    good, bad = images
    assert find_unreadable(good + bad, num_workers=2) == bad
    dataset = ImageDataset(_records(good[:2] + bad), verify=True)
    assert [r.path for r in dataset.records] == good[:2]
    assert sorted(dataset.skipped) == sorted(bad)
    with pytest.raises(ImageReadError):
        ImageDataset(_records(good[:2] + bad), verify=True, strict=True)


def test_pair_dataset_samples_and_skips_pairs_with_a_bad_view(images):
    good, bad = images
    pairs = [
        PairRecord(good[0], good[1], label=0, location="0001", gps=(47.5, 8.25)),
        PairRecord(good[2], bad[0], label=1, location="0002"),
        PairRecord(good[3], good[4], label=2, location="0003"),
    ]
    dataset = PairDataset(pairs)
    batch = dataset.collate_fn([dataset[i] for i in range(3)])
    assert set(batch) >= {"query", "satellite", "label", "location", "gps", "index"}
    assert batch["index"].tolist() == [0, 2]
    assert batch["location"] == ["0001", "0003"]
    assert batch["gps"].dtype == torch.float64
    assert batch["gps"][0].tolist() == [47.5, 8.25]
    assert all(math.isnan(v) for v in batch["gps"][1].tolist())
    assert batch["skipped"] == [str(bad[0])]
    with pytest.raises(ImageReadError, match=str(bad[0])):
        PairDataset(pairs, strict=True)[1]
    assert [p.location for p in PairDataset(pairs, verify=True).pairs] == ["0001", "0003"]


def test_pair_dataset_applies_the_paired_transform(images):
    good, _ = images
    calls = []

    def paired(query, satellite):
        calls.append((query.size, satellite.size))
        return torch.zeros(3, 2, 4), torch.ones(3, 2, 2)

    sample = PairDataset([PairRecord(good[0], good[1], 0, "0001")], transform=paired)[0]
    assert calls == [((32, 32), (32, 32))]
    assert sample["query"].shape == (3, 2, 4) and sample["satellite"].shape == (3, 2, 2)


def test_16_bit_and_float_images_decode_by_their_type_range(tmp_path):
    # Pillow's convert("RGB") clips at 255: a 16-bit gradient came out white everywhere but its
    # darkest corner; 16-bit samples are divided by 257, float samples in [0, 1] times 255
    gradient = (np.arange(48 * 64).reshape(48, 64) * 21).astype(np.uint16)  # 0 .. 64491
    assert Image.fromarray(gradient).mode == "I;16"
    png16 = tmp_path / "gradient16.png"
    Image.fromarray(gradient).save(png16)
    expected = np.rint(gradient / 257.0).astype(np.uint8)
    tiff32 = tmp_path / "gradient32.tif"
    Image.fromarray(gradient.astype(np.int32)).save(tiff32)  # mode I
    floats = tmp_path / "float.tif"
    ramp = np.linspace(0.0, 1.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    Image.fromarray(ramp).save(floats)  # mode F
    for path, want in ((png16, expected), (tiff32, expected), (floats, np.rint(ramp * 255.0))):
        decoded = np.asarray(load_rgb(path))
        assert decoded.dtype == np.uint8 and decoded.shape == (48, 64, 3)
        for channel in range(3):
            np.testing.assert_array_equal(decoded[..., channel], want)
    # training and evaluation read through the same decoder
    sample = ImageDataset(_records([png16]))[0]
    np.testing.assert_array_equal(sample["image"][0].numpy(), expected)
    assert find_unreadable([png16, tiff32, floats]) == []


def test_float_images_without_a_known_scale_are_refused_with_the_path(tmp_path):
    beyond = tmp_path / "beyond.tif"
    Image.fromarray(np.full((8, 8), 3.5, dtype=np.float32)).save(beyond)
    nan = tmp_path / "nan.tif"
    Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32)).save(nan)
    with pytest.raises(ImageReadError, match=rf"{beyond}.*outside|{beyond}.*\[3\.5, 3\.5\]"):
        load_rgb(beyond)
    with pytest.raises(ImageReadError, match=rf"{nan}.*NaN or infinite"):
        load_rgb(nan)
    assert find_unreadable([beyond, nan]) == [beyond, nan]
