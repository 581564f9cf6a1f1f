"""The synthetic cross-view world: a procedural town rendered from satellite, drone and street.

`generate(layout, out, locations, views_per_location, size, seed, **options)` writes a dataset
in the real University-1652, SUES-200, CVUSA or CVACT tree (read by `cvd.data`'s loaders as is) plus
a metadata file; `DEFAULTS` is the small dataset the demo and CI use; `write_preview` draws a
contact sheet. The pieces (world, cameras, renderer) are exposed for tests and studies.
"""

from cvd.data.synthetic.cameras import OrthoCamera, PanoramaCamera, PinholeCamera, look_at
from cvd.data.synthetic.generate import METADATA_FILE, generate, load_metadata, plan_dataset
from cvd.data.synthetic.georef import GeoReference
from cvd.data.synthetic.lighting import Capture, drone_capture, satellite_capture
from cvd.data.synthetic.location import DroneShot, LocationRenderer, LocationSpec, drone_camera
from cvd.data.synthetic.options import DEFAULTS, GENERATOR_VERSION, LAYOUTS, DatasetDefaults, SynthOptions
from cvd.data.synthetic.raster import FacadeTable, Material, Raster
from cvd.data.synthetic.render import Scene, render
from cvd.data.synthetic.world import World

__all__ = [
    "DEFAULTS",
    "GENERATOR_VERSION",
    "LAYOUTS",
    "METADATA_FILE",
    "Capture",
    "DatasetDefaults",
    "DroneShot",
    "FacadeTable",
    "GeoReference",
    "LocationRenderer",
    "LocationSpec",
    "Material",
    "OrthoCamera",
    "PanoramaCamera",
    "PinholeCamera",
    "Raster",
    "Scene",
    "SynthOptions",
    "World",
    "drone_camera",
    "drone_capture",
    "generate",
    "load_metadata",
    "look_at",
    "plan_dataset",
    "render",
    "satellite_capture",
]
