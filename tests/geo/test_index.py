"""The gallery index: exact vs brute force, approximate recall, manifest and corruption checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cvd.errors import GalleryIndexError
from cvd.geo.gallery import GalleryTile
from cvd.geo.gallery_index import (
    AUTO_FLAT_MAX_TILES,
    INDEX_FILE,
    MANIFEST_FILE,
    TILES_FILE,
    GalleryIndex,
    IndexParams,
    ModelInfo,
    choose_index_type,
    median_spacing_m,
)

MODEL = ModelInfo(identity="sha256:model-a", source="/models/a", view="satellite")


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def planted(
    rng: np.random.Generator, gallery: np.ndarray, n: int, cosine: float
) -> tuple[np.ndarray, np.ndarray]:
    """Queries at about `cosine` to random gallery rows (a query with a true match)."""
    sources = rng.choice(len(gallery), n, replace=False)
    sigma = np.sqrt((1 / cosine**2 - 1) / gallery.shape[1])
    queries = gallery[sources] + sigma * rng.standard_normal((n, gallery.shape[1])).astype(np.float32)
    return queries, sources


def fake_tiles(n: int) -> list[GalleryTile]:
    return [
        GalleryTile(f"t{i}", Path(f"/tiles/t{i}.png"), 47.0 + (i // 100) * 1e-3, 8.0 + (i % 100) * 1e-3)
        for i in range(n)
    ]


def test_auto_choice_and_override():
    assert choose_index_type(AUTO_FLAT_MAX_TILES) == "flat"
    assert choose_index_type(AUTO_FLAT_MAX_TILES + 1) == "ivfpq"
    assert choose_index_type(10, "ivfpq") == "ivfpq"
    with pytest.raises(ValueError, match="index type"):
        choose_index_type(10, "kdtree")


def test_flat_index_equals_brute_force_numpy():
    rng = np.random.default_rng(0)
    gallery, queries = unit_rows(rng, 500, 24), unit_rows(rng, 40, 24)
    index = GalleryIndex.build(gallery * 3.0, fake_tiles(500), MODEL)  # unnormalised input is normalised
    scores, rows = index.search(queries * 0.5, 7)
    reference = queries @ gallery.T
    expected_rows = np.argsort(-reference, axis=1)[:, :7]
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, np.take_along_axis(reference, expected_rows, axis=1), atol=1e-5)
    assert index.index_type == "flat"


def test_search_pads_when_the_gallery_is_smaller_than_k():
    rng = np.random.default_rng(1)
    index = GalleryIndex.build(unit_rows(rng, 3, 8), fake_tiles(3), MODEL)
    scores, rows = index.search(unit_rows(rng, 1, 8), 5)
    assert rows[0, 3:].tolist() == [-1, -1] and np.all(np.isneginf(scores[0, 3:]))


@pytest.mark.parametrize(
    ("index_type", "params"),
    [
        ("hnsw", IndexParams(hnsw_m=16, hnsw_ef_construction=64, hnsw_ef_search=64)),
        ("ivfpq", IndexParams(pq_m=16, ivf_nprobe=48, refine_factor=32, train_size=10_000)),
    ],
)
def test_approximate_indexes_find_the_exact_top1_of_planted_queries(index_type, params):
    rng = np.random.default_rng(2)
    gallery = unit_rows(rng, 10_000, 32)
    queries, _ = planted(rng, gallery, 200, cosine=0.7)
    exact = np.argmax(queries @ gallery.T, axis=1)
    index = GalleryIndex.build(gallery, fake_tiles(10_000), MODEL, index_type=index_type, params=params)
    _, rows = index.search(queries, 1)
    assert index.index_type == index_type
    assert np.mean(rows[:, 0] == exact) >= 0.95


def test_ivfpq_refuses_small_galleries():
    rng = np.random.default_rng(3)
    with pytest.raises(ValueError, match="ivfpq needs at least"):
        GalleryIndex.build(unit_rows(rng, 100, 16), fake_tiles(100), MODEL, index_type="ivfpq")


@pytest.fixture()
def saved_index(tmp_path) -> tuple[Path, GalleryIndex, np.ndarray]:
    rng = np.random.default_rng(4)
    gallery = unit_rows(rng, 300, 16)
    index = GalleryIndex.build(gallery, fake_tiles(300), MODEL)
    index.save(tmp_path / "idx")
    return tmp_path / "idx", index, gallery


def test_save_load_round_trip(saved_index):
    folder, index, gallery = saved_index
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["model"]["identity"] == "sha256:model-a"
    assert manifest["model"]["embedding_dim"] == 16
    assert manifest["normalisation"] == "l2" and manifest["index"]["type"] == "flat"
    assert set(manifest["files"]) == {INDEX_FILE, TILES_FILE} and manifest["created"]
    loaded = GalleryIndex.load(folder, expected_identity="sha256:model-a")
    assert loaded.tiles == index.tiles
    np.testing.assert_array_equal(loaded.search(gallery[:5], 1)[1][:, 0], np.arange(5))


def test_loading_with_another_model_fails_naming_the_manifest(saved_index):
    folder, _, _ = saved_index
    with pytest.raises(
        GalleryIndexError, match=rf"{MANIFEST_FILE}: index was built with model sha256:model-a"
    ):
        GalleryIndex.load(folder, expected_identity="sha256:model-b")


def test_corrupted_index_file_is_detected(saved_index):
    folder, _, _ = saved_index
    data = bytearray((folder / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the vectors
    (folder / INDEX_FILE).write_bytes(bytes(data))
    with pytest.raises(GalleryIndexError, match=rf"{INDEX_FILE}: file changed or corrupted"):
        GalleryIndex.load(folder)


def test_truncated_index_file_fails_cleanly_even_without_checksums(saved_index):
    folder, _, _ = saved_index
    (folder / INDEX_FILE).write_bytes((folder / INDEX_FILE).read_bytes()[:100])
    with pytest.raises(GalleryIndexError, match=rf"{INDEX_FILE}: faiss cannot read it"):
        GalleryIndex.load(folder, verify_checksums=False)


def test_edited_tiles_file_is_detected(saved_index):
    folder, _, _ = saved_index
    text = (folder / TILES_FILE).read_text().replace("47.0", "46.0", 1)
    (folder / TILES_FILE).write_text(text)
    with pytest.raises(GalleryIndexError, match=rf"{TILES_FILE}: file changed or corrupted"):
        GalleryIndex.load(folder)


def test_missing_or_foreign_manifest(saved_index, tmp_path):
    folder, _, _ = saved_index
    (folder / MANIFEST_FILE).write_text('{"format": "something-else"}')
    with pytest.raises(GalleryIndexError, match="not a cvd gallery index manifest"):
        GalleryIndex.load(folder)
    (folder / MANIFEST_FILE).unlink()
    with pytest.raises(GalleryIndexError, match=rf"{MANIFEST_FILE}: missing"):
        GalleryIndex.load(folder)
    with pytest.raises(GalleryIndexError, match="index folder not found"):
        GalleryIndex.load(tmp_path / "nowhere")


def test_query_of_the_wrong_size_is_refused(saved_index):
    _, index, _ = saved_index
    with pytest.raises(GalleryIndexError, match="query embeddings are 8-d but the index holds 16-d"):
        index.search(np.ones((1, 8), dtype=np.float32), 1)


def test_median_spacing_of_a_regular_grid():
    # tiles 1e-3 deg apart in latitude and longitude at 47 N: nearest neighbour is the east-west one
    spacing = median_spacing_m(fake_tiles(1000))
    expected = 6_371_008.8 * np.radians(1e-3) * np.cos(np.radians(47.0))
    assert spacing == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("index_type", ["hnsw", "ivfpq"])
def test_approximate_index_round_trip_keeps_results_and_knobs(tmp_path, index_type):
    rng = np.random.default_rng(6)
    gallery = unit_rows(rng, 2_000, 32)
    queries, _ = planted(rng, gallery, 50, cosine=0.7)
    params = IndexParams(pq_m=16, hnsw_ef_search=40)
    index = GalleryIndex.build(gallery, fake_tiles(2_000), MODEL, index_type=index_type, params=params)
    before = index.search(queries, 5)
    index.save(tmp_path / "idx")
    loaded = GalleryIndex.load(tmp_path / "idx")
    after = loaded.search(queries, 5)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_allclose(before[0], after[0], atol=1e-6)
    import faiss

    if index_type == "ivfpq":  # the default probes half of the lists, also after loading
        ivf = faiss.extract_index_ivf(faiss.downcast_index(loaded.faiss_index).base_index)
        assert ivf.nprobe == ivf.nlist // 2 and ivf.nlist == 32
    else:
        assert loaded.faiss_index.hnsw.efSearch == 40
