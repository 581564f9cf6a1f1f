"""Data: benchmark loaders, records, torch datasets, paired transforms and samplers.

Does not import `cvd.data.synthetic` (the procedural world exposes its own API there).
"""

from cvd.data.cvact import CVACT, utm_to_latlon
from cvd.data.cvusa import CVUSA
from cvd.data.geotagged import GeoTaggedFolder
from cvd.data.images import ImageDataset, PairDataset, collate_skipping, find_unreadable, load_rgb
from cvd.data.layout import LayoutCheck
from cvd.data.records import JUNK_LABEL, ImageRecord, PairRecord, RetrievalSplit
from cvd.data.registry import DATASETS, Benchmark, build_dataset, register_dataset
from cvd.data.samplers import (
    SAMPLERS,
    GPSNeighbourSampler,
    MutuallyExclusiveSampler,
    NeighbourSampler,
    SimilaritySampler,
    UniqueLocationSampler,
    build_sampler,
    gps_neighbours,
    neighbours_from_embeddings,
)
from cvd.data.sues200 import SUES200
from cvd.data.transforms import (
    PairedTransform,
    PolarTransform,
    build_eval_transform,
    build_pair_transform,
    image_transform,
    polar_transform,
    rotate_pair,
)
from cvd.data.university1652 import University1652

__all__ = [
    "CVACT",
    "CVUSA",
    "DATASETS",
    "JUNK_LABEL",
    "SAMPLERS",
    "SUES200",
    "Benchmark",
    "GPSNeighbourSampler",
    "GeoTaggedFolder",
    "ImageDataset",
    "ImageRecord",
    "LayoutCheck",
    "MutuallyExclusiveSampler",
    "NeighbourSampler",
    "PairDataset",
    "PairRecord",
    "PairedTransform",
    "PolarTransform",
    "RetrievalSplit",
    "SimilaritySampler",
    "UniqueLocationSampler",
    "University1652",
    "build_dataset",
    "build_eval_transform",
    "build_pair_transform",
    "build_sampler",
    "collate_skipping",
    "find_unreadable",
    "gps_neighbours",
    "image_transform",
    "load_rgb",
    "neighbours_from_embeddings",
    "polar_transform",
    "register_dataset",
    "rotate_pair",
    "utm_to_latlon",
]
