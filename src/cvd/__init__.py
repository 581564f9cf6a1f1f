"""cvd: cross-view geo-localization with Content-Viewpoint Disentanglement."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cvd")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
