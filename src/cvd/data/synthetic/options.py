"""Every knob of the synthetic world, with the defaults the demo and CI use.

The defaults were tuned (docs/benchmarks.md, section "Synthetic world") so that pretrained
ImageNet features retrieve drone->satellite well above chance but far from perfectly: the
world must pose the viewpoint problem CVD is built for and still be learnable on a CPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cvd.errors import ConfigError

GENERATOR_VERSION = "1.0"
LAYOUTS = ("university1652", "sues200", "cvusa", "cvact")


@dataclass(frozen=True)
class SynthOptions:
    """Parameters of one generated dataset; all of them are written to its metadata file."""

    # --- world ---
    cell_size: float = 0.5
    """Raster resolution of the world in metres: finer than the output pixels at 256 px."""
    location_spacing: float = 220.0
    """Mean distance between neighbouring locations (jittered grid), metres."""
    block_size: float = 150.0
    """Mean side of a street block, metres. Large blocks make a tile hold one or two land uses
    instead of an average of five, which is what tells places apart (measured: 105 m gave
    zero-shot R@1 11%, 150 m 17%, on 100 locations)."""
    origin_lat: float = 47.3769
    origin_lon: float = 8.5417
    """WGS84 point that world (0, 0) maps to (transverse Mercator centred there)."""
    terrain_relief: float = 6.0
    """Peak-to-peak height of the gentle terrain undulation, metres."""
    urbanity_bias: float = 0.0
    """Added to the zoning noise: >0 gives a denser town, <0 more countryside."""
    vivid_roofs: float = 0.35
    """Share of large buildings with a strongly coloured roof (blue, green, red metal...)."""
    style_strength: float = 1.0
    """How far district vegetation tints depart from neutral (0 = one look everywhere)."""
    zoning_scale: float = 250.0
    """Size (m) of the districts sharing a land-use mix: smaller makes neighbouring places differ more."""

    # --- satellite capture ---
    satellite_extent: float = 220.0
    """Side of a satellite tile on the ground, metres (fixed GSD = extent / size)."""
    satellite_off_nadir_deg: tuple[float, float] = (0.0, 6.0)
    """Range of the satellite's off-nadir angle: tall buildings lean slightly as in real tiles."""

    # --- drone capture ---
    altitudes: tuple[float, ...] = (150.0, 200.0, 250.0, 300.0)
    """Flight heights above the target's ground, metres (SUES-200's four levels)."""
    drone_pitch_deg: tuple[float, float] = (48.0, 62.0)
    """Depression angle of the optical axis below the horizon (oblique, facades visible)."""
    drone_vfov_deg: float = 42.0
    aim_jitter: float = 12.0
    """Metres by which the camera's aim point wanders from the location centre."""
    max_view_distance: float = 900.0

    # --- street capture ---
    street_height: float = 2.5
    street_search_radius: float = 60.0

    # --- appearance differences between captures ---
    drone_haze: tuple[float, float] = (0.0002, 0.0008)
    """Range of the drone capture's haze extinction coefficient (1/m)."""
    satellite_veil: tuple[float, float] = (0.04, 0.14)
    season_shift: float = 0.35
    """How far vegetation colour may move (green <-> dry) between captures, 0..1."""
    colour_jitter: float = 1.0
    """Scale of per-capture white balance / exposure / saturation differences (0 = none)."""
    sensor_noise: float = 0.012

    # --- writer ---
    jpeg_quality: int = 90
    distractors: int | None = None
    """University-1652 distractor locations (gallery only); None = round(0.357 * test locations)."""
    street_views: bool = False
    """University-1652 layout: also write train/street and test query/gallery street folders."""
    sues_layout: str = "both"
    """SUES-200: "raw" (drone_view_512 / satellite-view), "split" (Training/Testing) or "both"."""
    workers: int = 1
    """Processes rendering locations in parallel (output bytes do not depend on it)."""

    def replace(self, **changes: Any) -> SynthOptions:
        """A copy with some options changed, validated."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(
                f"unknown synthetic option(s) {', '.join(unknown)}; known: "
                + ", ".join(f.name for f in dataclasses.fields(self))
            )
        types = {f.name: str(f.type) for f in dataclasses.fields(self)}
        coerced = {name: _coerce(name, types[name], value) for name, value in changes.items()}
        updated = dataclasses.replace(self, **coerced)
        updated.validate()
        return updated

    def validate(self) -> None:
        """Reject values that would give an empty, degenerate or unbounded world, naming the field."""
        positive = ("cell_size", "location_spacing", "block_size", "satellite_extent", "drone_vfov_deg")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"synthetic option {name} must be > 0, got {getattr(self, name)!r}")
        if not self.altitudes or any(a <= 20 for a in self.altitudes):
            raise ConfigError(f"synthetic option altitudes must be heights > 20 m, got {self.altitudes!r}")
        low, high = self.drone_pitch_deg
        if not 10 <= low <= high <= 89:
            raise ConfigError(
                f"synthetic option drone_pitch_deg must lie in [10, 89], got {self.drone_pitch_deg!r}"
            )
        if not low - self.drone_vfov_deg / 2 > 5:
            raise ConfigError(
                "synthetic options drone_pitch_deg/drone_vfov_deg: the top of the drone image must look "
                f"at least 5 degrees below the horizon (pitch {low} - vfov/2 {self.drone_vfov_deg / 2})"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"synthetic option jpeg_quality must be in 1..100, got {self.jpeg_quality!r}")
        if self.sues_layout not in ("raw", "split", "both"):
            raise ConfigError(
                f"synthetic option sues_layout must be raw, split or both, got {self.sues_layout!r}"
            )
        if self.distractors is not None and self.distractors < 0:
            raise ConfigError(f"synthetic option distractors must be >= 0, got {self.distractors!r}")
        if self.workers < 1:
            raise ConfigError(f"synthetic option workers must be >= 1, got {self.workers!r}")

    def to_dict(self) -> dict[str, Any]:
        """The dataset's parameters as a JSON-ready mapping (tuples become lists). `workers` is
        left out: it changes how fast a dataset is made, never its bytes."""
        values = dataclasses.asdict(self)
        values.pop("workers")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


@dataclass(frozen=True)
class DatasetDefaults:
    """The small dataset the demo and CI generate when nothing else is asked for."""

    layout: str = "university1652"
    locations: int = 80
    views_per_location: int = 8
    size: int = 128
    seed: int = 0
    options: SynthOptions = field(default_factory=SynthOptions)


DEFAULTS = DatasetDefaults()


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(name: str, type_text: str, value: Any) -> Any:
    """`value` as the field's declared type, or a ConfigError naming the option.

    Values come from the command line (`--set street_views=false` arrives as a string) as well as
    from Python; without this a string "false" would count as true and a single altitude would
    fail deep inside the renderer."""

    def fail(expected: str) -> ConfigError:
        return ConfigError(f"synthetic option {name}: expected {expected}, got {value!r}")

    def scalar(kind: str, item: Any) -> Any:
        if isinstance(item, str):
            text = item.strip().lower()
            if kind == "bool":
                if text in _TRUE or text in _FALSE:
                    return text in _TRUE
                raise fail("true or false")
            try:
                item = float(text) if kind == "float" else int(text)
            except ValueError:
                raise fail(f"a number ({kind})") from None
        if kind == "bool":
            if isinstance(item, bool) or item in (0, 1):
                return bool(item)
            raise fail("true or false")
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise fail(f"a number ({kind})")
        if kind == "int":
            if float(item) != int(item):
                raise fail("a whole number")
            return int(item)
        return float(item)

    if type_text.startswith("tuple["):
        inner = type_text[len("tuple[") : -1]
        items = list(value) if isinstance(value, list | tuple) else [value]
        if inner.endswith(", ..."):
            if not items:
                raise fail("at least one value")
            return tuple(scalar(inner[: -len(", ...")], item) for item in items)
        kinds = [part.strip() for part in inner.split(",")]
        if len(items) != len(kinds):
            raise fail(f"{len(kinds)} comma-separated values")
        return tuple(scalar(kind, item) for kind, item in zip(kinds, items, strict=True))
    if type_text.endswith("| None"):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return scalar(type_text.split("|")[0].strip(), value)
    if type_text in ("bool", "int", "float"):
        return scalar(type_text, value)
    return value if isinstance(value, str) else str(value)
