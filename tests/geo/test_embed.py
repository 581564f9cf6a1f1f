"""Resumable sharded embedding: simulated ranks merge to the single-process result; resume; skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from tests.tolerance import assert_close_scaled

from cvd.errors import GalleryIndexError
from cvd.geo.build import build_index
from cvd.geo.gallery_index import GalleryIndex
from cvd.geo.tile_shards import ShardPlan, embed_shards, merge_shards, shard_path


def test_shard_plan_round_robin_covers_every_row_once():
    plan = ShardPlan(n_tiles=23, shard_size=5)
    assert plan.n_shards == 5
    assert list(plan.rows(4)) == [20, 21, 22]
    owned = [plan.owned_by(rank, 3) for rank in range(3)]
    assert owned == [[0, 3], [1, 4], [2]]
    rows = sorted(row for shards in owned for shard in shards for row in plan.rows(shard))
    assert rows == list(range(23))


def test_simulated_ranks_merge_to_the_single_process_embeddings(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 23)
    reference = helpers.HandEmbedder()
    embed_shards(reference, tiles, tmp_path / "single", shard_size=5, batch_size=4, progress=False)
    single = merge_shards(tiles, tmp_path / "single", reference.identity, shard_size=5)
    # the reference itself: every tile embedded directly, in order
    images = torch.stack([reference.transform(Image.open(tile.path)) for tile in tiles])
    direct = np.concatenate([reference.embed(images[i : i + 1]) for i in range(23)])
    # batches of 4 vs single images: another GEMM blocking, another float32 summation order;
    # measured within 5e-7 of the scale, judged within 1e-5 of it (a swapped row moves ~0.1)
    assert_close_scaled(single.embeddings, direct, rel=1e-5)

    for rank in (2, 0, 1):  # ranks finish in any order; each writes only its own shards
        embedder = helpers.HandEmbedder()
        report = embed_shards(
            embedder, tiles, tmp_path / "multi", shard_size=5, rank=rank, world_size=3, progress=False
        )
        assert report.embedded == ShardPlan(23, 5).owned_by(rank, 3)
    multi = merge_shards(tiles, tmp_path / "multi", reference.identity, shard_size=5)
    np.testing.assert_array_equal(multi.rows, np.arange(23))
    assert_close_scaled(multi.embeddings, single.embeddings, rel=1e-5)


def test_interrupted_build_resumes_without_redoing_finished_shards(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 20)
    crashing = helpers.HandEmbedder(fail_after=2)  # dies in its third batch = the second shard
    with pytest.raises(KeyboardInterrupt):
        build_index(crashing, tiles, tmp_path / "idx", shard_size=8, batch_size=4, progress=False)
    assert shard_path(tmp_path / "idx", 0).is_file() and not shard_path(tmp_path / "idx", 1).exists()
    assert not (tmp_path / "idx" / "manifest.json").exists()
    assert not list((tmp_path / "idx" / "shards").glob(".*tmp"))  # no half-written shard left behind

    resumed = helpers.HandEmbedder()
    index = build_index(resumed, tiles, tmp_path / "idx", shard_size=8, batch_size=4, progress=False)
    assert resumed.calls == 3  # shards 1 and 2: 8 + 4 tiles in batches of 4; shard 0 reused
    fresh = helpers.HandEmbedder()
    build_index(fresh, tiles, tmp_path / "fresh", shard_size=8, batch_size=4, progress=False)
    assert fresh.calls == 5
    loaded = GalleryIndex.load(tmp_path / "idx", expected_identity=resumed.identity)
    np.testing.assert_allclose(
        loaded.faiss_index.reconstruct_n(0, 20),
        GalleryIndex.load(tmp_path / "fresh").faiss_index.reconstruct_n(0, 20),
    )
    assert index.manifest["build"]["n_tiles_failed"] == 0


def test_shards_of_another_model_are_recomputed_not_mixed_in(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 10)
    embed_shards(helpers.HandEmbedder("sha256:old"), tiles, tmp_path / "w", shard_size=5, progress=False)
    new = helpers.HandEmbedder("sha256:new")
    with pytest.raises(GalleryIndexError, match=r"2 of 2 shard\(s\) missing or from another model"):
        merge_shards(tiles, tmp_path / "w", new.identity, shard_size=5)
    report = embed_shards(new, tiles, tmp_path / "w", shard_size=5, progress=False)
    assert report.embedded == [0, 1] and report.reused == []
    assert len(merge_shards(tiles, tmp_path / "w", new.identity, shard_size=5).rows) == 10


def test_damaged_shard_file_is_recomputed(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 6)
    embedder = helpers.HandEmbedder()
    embed_shards(embedder, tiles, tmp_path / "w", shard_size=3, progress=False)
    shard_path(tmp_path / "w", 1).write_bytes(b"garbage")
    report = embed_shards(embedder, tiles, tmp_path / "w", shard_size=3, progress=False)
    assert report.embedded == [1] and report.reused == [0]


def test_unreadable_tiles_are_skipped_and_listed(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 7)
    tiles[3].path.write_bytes(b"\x89PNG but truncated")
    index = build_index(helpers.HandEmbedder(), tiles, tmp_path / "idx", shard_size=4, progress=False)
    assert len(index.tiles) == 6 and tiles[3] not in index.tiles
    failed = index.manifest["build"]["failed"]
    assert [f["id"] for f in failed] == [tiles[3].id] and str(tiles[3].path) in failed[0]["reason"]


def test_rank_zero_waits_for_missing_shards_then_names_them(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 10)
    embedder = helpers.HandEmbedder()
    embed_shards(embedder, tiles, tmp_path / "w", shard_size=5, rank=0, world_size=2, progress=False)
    with pytest.raises(GalleryIndexError, match=r"1 of 2 shard\(s\).*shard-000001\.npz"):
        merge_shards(tiles, tmp_path / "w", embedder.identity, shard_size=5, wait_s=0.3, poll_s=0.1)


def test_an_index_is_never_written_into_a_folder_of_other_files(tmp_path, helpers):
    tiles = helpers.grid_tiles(tmp_path / "tiles", 4)
    before = sorted(p.name for p in (tmp_path / "tiles").iterdir())
    # the tiles' own folder: the index's tiles.csv would replace the user's
    with pytest.raises(GalleryIndexError, match=r"--out .*tiles is not an index folder"):
        build_index(helpers.HandEmbedder(), tiles, tmp_path / "tiles", shard_size=4, progress=False)
    assert sorted(p.name for p in (tmp_path / "tiles").iterdir()) == before
    # an index folder is rebuilt in place
    build_index(helpers.HandEmbedder(), tiles, tmp_path / "idx", shard_size=4, progress=False)
    index = build_index(helpers.HandEmbedder(), tiles, tmp_path / "idx", shard_size=4, progress=False)
    assert len(index.tiles) == 4
