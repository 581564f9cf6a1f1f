"""The gallery index: a faiss vector index + tile metadata + a manifest that guards both.

On disk an index is a folder:
- `vectors.faiss`  the faiss index over L2-normalised embeddings (inner product = cosine);
- `tiles.csv`      one row per indexed vector, in index order (the tile CSV format);
- `manifest.json`  written last: model identity, embedding size, normalisation, index type and
                   parameters, creation time, and the SHA-256 of the two files above.

Loading checks the manifest against the files (a changed or truncated file is named) and,
when the caller says which model it will query with, against that model's identity: vectors of
another model are meaningless to it, and a silent mismatch would give confident nonsense.

Index types (`--index-type`): `flat` (exact, IndexFlatIP), `hnsw` (IndexHNSWFlat, graph search
over the full vectors) and `ivfpq` (inverted lists + 4-bit fast-scan product quantisation,
re-ranked with the full vectors). `auto` picks flat up to `AUTO_FLAT_MAX_TILES` and ivfpq
above: see docs/benchmarks.md (section "Localization index") for the measurements behind the
choice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cvd.atomic import atomic_output, atomic_write_text
from cvd.errors import ConfigError, GalleryIndexError
from cvd.geo.gallery import GalleryTile, read_tiles_csv, write_tiles_csv

INDEX_FILE = "vectors.faiss"
TILES_FILE = "tiles.csv"
MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "cvd-gallery-index"
FORMAT_VERSION = 1
INDEX_TYPES = ("flat", "hnsw", "ivfpq")
# Up to here exact search answers a single 512-d query in a few ms on a busy 2-core CPU (2.3 ms
# measured at 25k, 12 ms at 50k, 24 ms at 100k); beyond, ivfpq, which beat HNSW on build time,
# recall and latency at 1M tiles (docs/benchmarks.md, "Localization index").
AUTO_FLAT_MAX_TILES = 25_000
MIN_IVFPQ_TILES = 1_000  # enough points to train its lists (39 per list) and 16-centroid PQ
# Searches of fewer queries than this run on one faiss thread: waking a second OpenMP thread
# costs more than it saves for one query (~10 ms on a busy 2-core machine; docs/benchmarks.md).
SINGLE_THREAD_MAX_QUERIES = 8


@dataclass
class IndexParams:
    """Tuning of the approximate indexes; stored in the manifest so a search repeats exactly."""

    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # None: about sqrt(n), a power of two (1024 lists for 1M tiles)
    ivf_nprobe: int | None = None  # None: half the lists (recall@1 0.97 at 1M planted, 2 ms)
    pq_m: int = 64  # PQ sub-quantizers (4 bits each: m/2 bytes per tile); must divide the size
    refine_factor: int = 16  # PQ candidates re-ranked with the full vectors, per result
    train_size: int = 100_000  # k-means training sample for ivfpq

    def nlist_for(self, n: int) -> int:
        if self.ivf_nlist:
            return self.ivf_nlist
        return int(2 ** max(4, round(math.log2(math.sqrt(max(n, 1))))))


@dataclass
class ModelInfo:
    """What the manifest records about the embedding model."""

    identity: str  # e.g. "sha256:..." of the released weights and config
    source: str  # where the model was loaded from when the index was built
    view: str = "satellite"
    embedding_dim: int = 0
    data_config: dict[str, Any] = field(default_factory=dict)


class IndexTypeError(ConfigError, ValueError):
    """The requested index type is unknown or does not suit the gallery (`--index-type`)."""


def choose_index_type(n_vectors: int, requested: str = "auto") -> str:
    """The index type for a gallery size, or the explicit override."""
    if requested == "auto":
        return "flat" if n_vectors <= AUTO_FLAT_MAX_TILES else "ivfpq"
    if requested not in INDEX_TYPES:
        raise IndexTypeError(f"index type must be auto or one of {INDEX_TYPES}, got {requested!r}")
    return requested


def l2_normalised(vectors: NDArray) -> NDArray[np.float32]:
    """Float32 C-contiguous copy with unit rows, as faiss inner-product search needs."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).copy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if vectors.size and (not np.all(np.isfinite(vectors)) or np.any(norms == 0)):
        raise ValueError("embeddings contain non-finite values or zero vectors")
    vectors /= norms
    return vectors


def build_faiss_index(
    vectors: NDArray[np.float32], index_type: str, params: IndexParams | None = None
) -> Any:
    """A faiss inner-product index of the given type holding `vectors` (unit rows)."""
    import faiss

    params = params or IndexParams()
    n, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.hnsw_ef_construction
    elif index_type == "ivfpq":
        if n < MIN_IVFPQ_TILES:
            raise IndexTypeError(
                f"ivfpq needs at least {MIN_IVFPQ_TILES} tiles to train on, got {n}; use flat"
            )
        if dim % params.pq_m or params.pq_m % 2:
            raise ValueError(f"pq_m={params.pq_m} must be even and divide the embedding size {dim}")
        nlist = min(params.nlist_for(n), n // 39)  # faiss wants >= 39 training points per list
        # 4-bit "fast-scan" PQ codes are scanned with SIMD lookups, several times faster than 8-bit
        # PQ at the same recall once re-ranked; RFlat re-ranks with the full vectors (exact scores)
        spec = f"IVF{nlist},PQ{params.pq_m}x4fs,RFlat"
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = (
            vectors
            if n <= params.train_size
            else vectors[np.sort(rng.choice(n, params.train_size, replace=False))]
        )
        index.train(sample)
    else:
        raise IndexTypeError(f"index type must be one of {INDEX_TYPES}, got {index_type!r}")
    index.add(vectors)
    apply_search_params(index, index_type, params)
    return index


def apply_search_params(index: Any, index_type: str, params: IndexParams) -> None:
    """Set query-time knobs (HNSW efSearch, IVF nprobe, refine factor) on a loaded index."""
    import faiss

    if index_type == "hnsw":
        index.hnsw.efSearch = params.hnsw_ef_search
    elif index_type == "ivfpq":
        refine = faiss.downcast_index(index)
        refine.k_factor = params.refine_factor
        ivf = faiss.extract_index_ivf(refine.base_index)
        ivf.nprobe = params.ivf_nprobe or max(1, ivf.nlist // 2)


def search_index(index: Any, queries: NDArray[np.float32], k: int) -> tuple[NDArray, NDArray]:
    """faiss search with the thread policy above: one thread for a handful of queries."""
    import faiss

    if len(queries) >= SINGLE_THREAD_MAX_QUERIES:
        return index.search(queries, k)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, k)
    finally:
        faiss.omp_set_num_threads(threads)


def file_sha256(path: Path, chunk: int = 1 << 24) -> str:
    """Hex SHA-256 of a file, streamed so gigabyte indexes do not load twice into memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class GalleryIndex:
    """Vector index + tile metadata + manifest; rows of the index are rows of `tiles`."""

    def __init__(self, faiss_index: Any, tiles: list[GalleryTile], manifest: dict[str, Any]) -> None:
        if faiss_index.ntotal != len(tiles):
            raise GalleryIndexError(
                f"index holds {faiss_index.ntotal} vectors but {len(tiles)} tiles are listed"
            )
        self.faiss_index = faiss_index
        self.tiles = tiles
        self.manifest = manifest
        self.lat = np.array([t.lat for t in tiles], dtype=np.float64)
        self.lon = np.array([t.lon for t in tiles], dtype=np.float64)

    @property
    def index_type(self) -> str:
        return self.manifest["index"]["type"]

    @property
    def model(self) -> dict[str, Any]:
        return self.manifest["model"]

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["model"]["embedding_dim"])

    @classmethod
    def build(
        cls,
        embeddings: NDArray,
        tiles: list[GalleryTile],
        model: ModelInfo,
        index_type: str = "auto",
        params: IndexParams | None = None,
        extra: dict[str, Any] | None = None,
    ) -> GalleryIndex:
        """Index the embeddings of `tiles` (row i of `embeddings` belongs to `tiles[i]`)."""
        if len(embeddings) != len(tiles):
            raise ValueError(f"{len(embeddings)} embeddings for {len(tiles)} tiles")
        if not tiles:
            raise ValueError("cannot index an empty gallery")
        params = params or IndexParams()
        vectors = l2_normalised(embeddings)
        chosen = choose_index_type(len(vectors), index_type)
        faiss_index = build_faiss_index(vectors, chosen, params)
        model = ModelInfo(**{**asdict(model), "embedding_dim": int(vectors.shape[1])})
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cvd_version": _cvd_version(),
            "model": asdict(model),
            "normalisation": "l2",
            "metric": "inner_product",
            "index": {
                "type": chosen,
                "requested": index_type,
                "n_vectors": len(vectors),
                "params": asdict(params),
            },
            "tiles": {"count": len(tiles), "median_spacing_m": median_spacing_m(tiles)},
            **(extra or {}),
        }
        return cls(faiss_index, list(tiles), manifest)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the three files; the manifest goes last so a crash never leaves a valid-looking index."""
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        manifest_path = directory / MANIFEST_FILE
        manifest_path.unlink(missing_ok=True)
        with atomic_output(directory / INDEX_FILE) as temporary:
            faiss.write_index(self.faiss_index, str(temporary))
        write_tiles_csv(self.tiles, directory / TILES_FILE)
        self.manifest["files"] = {name: file_sha256(directory / name) for name in (INDEX_FILE, TILES_FILE)}
        atomic_write_text(manifest_path, json.dumps(self.manifest, indent=2) + "\n")
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        expected_identity: str | None = None,
        verify_checksums: bool = True,
        params: IndexParams | None = None,
    ) -> GalleryIndex:
        """Open an index folder, checking its files and (optionally) the querying model.

        `params` overrides the stored query-time knobs (efSearch, nprobe, refine factor).
        """
        import faiss

        directory = Path(directory)
        manifest = read_manifest(directory)
        if expected_identity is not None and manifest["model"]["identity"] != expected_identity:
            raise GalleryIndexError(
                f"{directory / MANIFEST_FILE}: index was built with model {manifest['model']['identity']} "
                f"({manifest['model'].get('source')}), not with the model given ({expected_identity}); "
                "rebuild the index with this model or query it with the model it was built with"
            )
        for name in (INDEX_FILE, TILES_FILE):
            path = directory / name
            if not path.is_file():
                raise GalleryIndexError(f"{path}: missing from the index folder")
            expected = manifest["files"].get(name)
            if expected is None:
                raise GalleryIndexError(f"{directory / MANIFEST_FILE}: no checksum recorded for {name}")
            if verify_checksums and file_sha256(path) != expected:
                raise GalleryIndexError(
                    f"{path}: file changed or corrupted since the index was built (SHA-256 differs from "
                    f"{directory / MANIFEST_FILE}); rebuild the index"
                )
        try:
            faiss_index = faiss.read_index(str(directory / INDEX_FILE))
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unknown error"
            raise GalleryIndexError(
                f"{directory / INDEX_FILE}: faiss cannot read it ({first_line})"
            ) from None
        stored = IndexParams(**manifest["index"]["params"])
        apply_search_params(faiss_index, manifest["index"]["type"], params or stored)
        try:
            tiles = read_tiles_csv(directory / TILES_FILE, check_files=False)
        except Exception as error:  # a DatasetLayoutError here means the index folder is damaged
            message = str(error)
            prefix = f"{directory / TILES_FILE}: "
            raise GalleryIndexError(message if message.startswith(prefix) else prefix + message) from None
        if faiss_index.d != manifest["model"]["embedding_dim"]:
            raise GalleryIndexError(
                f"{directory / INDEX_FILE}: vectors are {faiss_index.d}-d but the manifest says "
                f"{manifest['model']['embedding_dim']}-d"
            )
        try:
            return cls(faiss_index, tiles, manifest)
        except GalleryIndexError as error:
            raise GalleryIndexError(f"{directory}: {error}") from None

    def search(self, queries: NDArray, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-k (scores, tile rows) per query, best first; scores are cosine similarities.

        Rows are -1 (score -inf) where the gallery has fewer than k tiles.
        """
        queries = l2_normalised(np.atleast_2d(queries))
        if queries.shape[1] != self.embedding_dim:
            raise GalleryIndexError(
                f"query embeddings are {queries.shape[1]}-d but the index holds "
                f"{self.embedding_dim}-d vectors"
            )
        scores, rows = search_index(self.faiss_index, queries, k)
        scores = np.where(rows < 0, -np.inf, scores).astype(np.float32)
        return scores, rows.astype(np.int64)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The parsed manifest of an index folder, or a GalleryIndexError naming what is wrong."""
    path = Path(directory) / MANIFEST_FILE
    if not Path(directory).is_dir():
        raise GalleryIndexError(f"{directory}: index folder not found")
    if not path.is_file():
        raise GalleryIndexError(f"{path}: missing; {directory} is not a complete cvd index (build it again)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryIndexError(f"{path}: unreadable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise GalleryIndexError(f"{path}: not a cvd gallery index manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise GalleryIndexError(
            f"{path}: index format version {manifest.get('format_version')} is not supported "
            f"(this cvd reads version {FORMAT_VERSION}); rebuild the index"
        )
    for key in ("model", "index", "files"):
        if key not in manifest:
            raise GalleryIndexError(f"{path}: manifest lacks the '{key}' section")
    return manifest


def median_spacing_m(tiles: list[GalleryTile], sample: int = 2000) -> float:
    """Median distance from a tile centre to its nearest other tile centre, in metres.

    It sets the scale at which top-k tiles count as "agreeing" on a position; computed on a
    sample so million-tile galleries cost a second, not an hour.
    """
    if len(tiles) < 2:
        return math.nan
    from scipy.spatial import cKDTree

    from cvd.earth import EARTH_RADIUS_M, unit_vectors

    xyz = unit_vectors([t.lat for t in tiles], [t.lon for t in tiles])
    rng = np.random.default_rng(0)
    picked = xyz if len(xyz) <= sample else xyz[rng.choice(len(xyz), sample, replace=False)]
    chord, _ = cKDTree(xyz).query(picked, k=2)
    angles = 2.0 * np.arcsin(np.clip(chord[:, 1] / 2.0, 0.0, 1.0))
    return float(np.median(angles) * EARTH_RADIUS_M)


def _cvd_version() -> str:
    from cvd import __version__

    return __version__
