"""Optional dependencies (pip extras), imported only by the feature that needs them.

`cvd[onnx]` (onnx, onnxruntime), `cvd[geotiff]` (rasterio) and `cvd[tensorboard]` are not
installed by default; a missing one must end in one line saying which extra to install, not in
an ImportError traceback from deep inside the toolkit.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cvd.errors import MissingExtraError


def require_extra(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or raise MissingExtraError telling how to install the `extra` for `purpose`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs the {extra} extra: pip install 'cvd[{extra}]' ({error})"
        ) from None
