"""Error types the `cvd` command reports as one clear message, without a traceback.

Every error here names the file, field or path at fault: the user must be able to fix the
cause from the message alone.
"""

from __future__ import annotations


class CVDError(Exception):
    """Base class of errors caused by user input (configs, data, weights, indexes)."""


class ConfigError(CVDError):
    """A config key or value is unknown or not allowed."""


class DatasetLayoutError(CVDError):
    """A dataset root lacks folders or files its benchmark's layout requires."""


class ImageReadError(CVDError):
    """An image file cannot be read or decoded."""


class WeightsError(CVDError):
    """Weights were asked for and cannot be loaded (never silently replaced by random ones)."""


class CheckpointError(CVDError):
    """A checkpoint or released model is missing, corrupt, or from another model."""


class GalleryIndexError(CVDError):
    """A gallery index is corrupt or does not belong to the model used to query it."""


class NonFiniteLossError(CVDError):
    """Training produced a NaN or infinite loss."""


class OptionError(ConfigError, ValueError):
    """A keyword option has a value it does not accept; `key` and `value` name it for the message.

    Also a ValueError, so Python callers that construct objects directly can catch it as one.
    """

    def __init__(self, key: str, value: object, reason: str) -> None:
        super().__init__(f"{key}={value!r}: {reason}")
        self.key, self.value, self.reason = key, value, reason


class MissingExtraError(CVDError):
    """An optional dependency a feature needs is not installed; the message names the extra."""


class RunLockedError(CVDError):
    """Another process is using the run folder (it holds the folder's lock)."""


class RunFolderError(CVDError):
    """A run folder cannot be used as asked: not this toolkit's run, or resumed with another config."""
