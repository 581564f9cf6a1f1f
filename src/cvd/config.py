"""Configs: the packaged default, experiment YAML files, and dotted command-line overrides.

The resolved config is a plain nested dict, merged in this order (later wins):

1. ``cvd/configs/default.yaml`` (every key that exists, with its default);
2. the experiment file's ``base:`` chain (paths relative to the file that names them), then the
   experiment file itself;
3. ``key.sub=value`` overrides from the command line (values parsed as YAML).

The default file is also the schema: a key that it does not define is an error, except below the
mappings listed in ``OPEN_KEYS``, whose contents belong to a dataset, head or recipe. Values of the
keys in ``CHOICES`` must be one of the listed names. Every error names the key, where the value
came from, and what is allowed, so a typo never trains the wrong experiment silently.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cvd.atomic import atomic_write_text
from cvd.errors import ConfigError

# Mappings whose keys are free-form (they are passed on to a dataset, a head, a recipe, ...).
OPEN_KEYS: frozenset[str] = frozenset(
    {
        "meta",
        "data.options",
        "data.augment",
        "data.sampler_options",
        "model.backbone.kwargs",
        "model.head.kwargs",
        "loss",
        "eval.options",
    }
)


# Keys that take more than one kind of value (e.g. ``pretrained: true`` or a path).
ANY_TYPE_KEYS: frozenset[str] = frozenset({"model.backbone.pretrained", "cvd.recon_size"})


def _registry_names(module: str, attribute: str) -> Callable[[], list[str]]:
    def names() -> list[str]:
        import importlib

        return sorted(getattr(importlib.import_module(module), attribute))

    return names


# Keys whose values must be one of a fixed or registered set of names.
CHOICES: dict[str, list[Any] | Callable[[], list[str]]] = {
    "data.dataset": _registry_names("cvd.data", "DATASETS"),
    "data.sampler": [
        "auto",
        "location_shuffle",
        "gps",
        "similarity",
        "mutually_exclusive",
    ],
    "model.baseline": _registry_names("cvd.baselines", "RECIPES"),
    "cvd.loc": ["auto", "baseline", "infonce", "bi-infonce", "none"],
    "cvd.variant": lambda: sorted(cvd_variants()),
    "cvd.split": ["conv", "complement"],
    "cvd.init": ["default", "rotation"],
    "cvd.recon_target": ["image", "feature", "pooled_feature"],
    "cvd.iic_estimator": ["paper", "channel_pairs"],
    "cvd.decoder_init": ["default", "zero"],
    "optim.name": ["adamw", "sgd"],
    "schedule.name": ["cosine", "step", "multistep", "constant"],
    "train.precision": ["auto", "fp32", "bf16", "fp16"],
    "train.device": ["auto", "cpu", "cuda"],
    "eval.protocol": ["auto", "university1652", "sues200", "cvusa", "cvact"],
    "eval.gallery_variant": ["official", "sample4geo"],
}

DEFAULT_CONFIG = "default.yaml"
CVD_VARIANTS = "cvd_variants.yaml"


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-4`` (no dot) as a number, as YAML 1.2 and people do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def packaged_config_path(name: str = DEFAULT_CONFIG) -> Path:
    """Path of a YAML file shipped inside the package (works from a wheel and a checkout)."""
    return Path(str(resources.files("cvd") / "configs" / name))


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read one YAML mapping, with the file named in every error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with path.open("r", encoding="utf-8") as handle:
            data = _yaml_load(handle.read())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base``: mappings merge, everything else replaces."""
    result = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _load_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"config files include each other in a loop: {chain}")
    data = read_yaml(path)
    bases = data.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for base in bases:
        inherited = _load_with_bases(path.parent / base, (*seen, path))
        inherited.pop("meta", None)  # provenance describes its own file only, never its children
        merged = merge(merged, inherited)
    return merge(merged, data)


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b.c=value`` and parse the value as YAML (so ``1e-3``, ``[1, 2]``, ``null`` work)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key.sub=value")
    try:
        value = _yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {error}") from error
    return key, value


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config[a][b][c] = value`` for ``key='a.b.c'``, creating mappings on the way."""
    parts = key.split(".")
    node = config
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"cannot set {key!r}: {prefix!r} is a value, not a mapping")
        node = child
    node[parts[-1]] = value


def get_dotted(config: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Read ``config['a']['b']['c']`` for ``key='a.b.c'``; ``default`` when a part is missing."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _is_open(key: str) -> bool:
    return any(key == open_key or key.startswith(open_key + ".") for open_key in OPEN_KEYS)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str | bool | int | float)  # e.g. pretrained: true or a path
    if isinstance(default, list):
        return isinstance(value, list | int)  # sizes: 384 or [384, 384]
    return isinstance(value, type(default))


def validate(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    sources: Mapping[str, str] | None = None,
) -> None:
    """Reject keys the schema does not define, values of the wrong kind, and names not allowed."""
    sources = sources or {}

    def where(key: str) -> str:
        return f" (set in {sources[key]})" if key in sources else ""

    def walk(node: Mapping[str, Any], reference: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if _is_open(dotted):
                continue
            if key not in reference:
                allowed = sorted(reference)
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
                scope = f"under {prefix[:-1]!r}" if prefix else "at the top level"
                raise ConfigError(
                    f"unknown config key {dotted!r}{where(dotted)}{hint} "
                    f"Allowed keys {scope}: {', '.join(allowed)}"
                )
            default = reference[key]
            if isinstance(default, Mapping):
                if value is None:
                    continue
                if not isinstance(value, Mapping):
                    raise ConfigError(f"config key {dotted!r}{where(dotted)} must be a mapping")
                walk(value, default, dotted + ".")
            elif dotted not in ANY_TYPE_KEYS and not _type_ok(default, value):
                raise ConfigError(
                    f"config key {dotted!r}{where(dotted)} = {value!r} has the wrong type: "
                    f"expected {type(default).__name__} like the default {default!r}"
                )

    walk(config, schema, "")
    for key, allowed in CHOICES.items():
        value = get_dotted(config, key, None)
        if value is None:
            continue
        names = allowed() if callable(allowed) else allowed
        if value not in names:
            close = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"config key {key!r}{where(key)} = {value!r} is not allowed{hint} "
                f"Choose one of: {', '.join(str(n) for n in names)}"
            )


def _flatten_keys(node: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        yield dotted
        if isinstance(value, Mapping) and not _is_open(dotted):
            yield from _flatten_keys(value, dotted + ".")


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    default: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Resolve default <- experiment file (with its bases) <- overrides, validated against the default."""
    default_path = Path(default) if default is not None else packaged_config_path()
    schema = read_yaml(default_path)
    config = copy.deepcopy(schema)
    sources: dict[str, str] = {}
    if path is not None:
        experiment = _load_with_bases(Path(path))
        for key in _flatten_keys(experiment):
            sources[key] = str(path)
        config = merge(config, experiment)
        if config.get("name") is None:
            # configs/<dataset>/<recipe>.yaml -> "<dataset>_<recipe>": one folder per row.
            config["name"] = f"{Path(path).resolve().parent.name}_{Path(path).stem}"
    for text in overrides:
        key, value = parse_override(text)
        sources[key] = f"command-line override {text!r}"
        set_dotted(config, key, value)
    validate(config, schema, sources)
    check_run_name(config.get("name"), sources.get("name"))
    config["cvd"] = apply_cvd_variant(config["cvd"])
    return config


def check_run_name(name: Any, source: str | None = None) -> None:
    """A run name is one folder inside ``output_dir``: never a path that leaves it (``../x``, ``/etc``).

    ``None`` is allowed (the name is then derived); anything else must be a single, plain path
    component, so a run can only ever write (or ``--overwrite`` delete) below its ``output_dir``.
    """
    if name is None:
        return
    where = f" (set in {source})" if source else ""
    text = str(name)
    problem = None
    if not text.strip():
        problem = "is empty"
    elif "/" in text or "\\" in text:  # absolute paths included
        problem = "contains a path separator"
    elif text in (".", ".."):
        problem = "is not a folder name"
    elif "\x00" in text:
        problem = "contains a NUL character"
    if problem:
        raise ConfigError(
            f"config key 'name'{where} = {text!r} {problem}: a run name must be one folder name "
            "inside output_dir (letters, digits, '-', '_', '.'), e.g. name=university1652_sample4geo"
        )


def cvd_variants() -> dict[str, dict[str, Any]]:
    """The CVD module's named variants (``cvd_variants.yaml``): the values a null ``cvd.*`` key takes."""
    return read_yaml(packaged_config_path(CVD_VARIANTS))


def apply_cvd_variant(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``cvd`` section with every null key the variant defines filled from ``cvd.variant``.

    Done when a config is loaded, so the saved config.yaml of a run holds the values it used,
    and a later change of a variant's preset cannot change what an existing run rebuilds.
    """
    resolved = dict(section)
    name = resolved.get("variant") or "paper"  # a config written before variants existed
    variants = cvd_variants()
    if name not in variants:
        choices = ", ".join(sorted(variants))
        raise ConfigError(f"cvd.variant: unknown variant {name!r}; choose one of: {choices}")
    resolved["variant"] = name
    for key, value in variants[name].items():
        if resolved.get(key) is None:
            resolved[key] = copy.deepcopy(value)
    return resolved


def dump_yaml(config: Mapping[str, Any]) -> str:
    """YAML text of a config, keys in their defined order."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None, allow_unicode=True)


def save_config(config: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write the resolved config (atomically) so a run can be rebuilt from its folder alone."""
    atomic_write_text(path, dump_yaml(config))
