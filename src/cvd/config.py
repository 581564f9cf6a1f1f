"""Configs: the packaged default, experiment YAML files, and dotted command-line overrides.

The resolved config is a plain nested dict, merged in this order (later wins):

1. ``cvd/configs/default.yaml`` (every key that exists, with its default);
2. the experiment file's ``base:`` chain (paths relative to the file that names them), then the
   experiment file itself;
3. ``key.sub=value`` overrides from the command line (values parsed as YAML).

The default file is also the schema of the keys and their defaults: a key that it does not define
is an error, except below the mappings listed in ``OPEN_KEYS``, whose contents belong to a dataset,
head or recipe. :mod:`cvd.schema` declares each key's type, range or choices and help, and what the
open mappings take (a recipe's ``loss_schema``, a dataset's, sampler's or head's signature). Every
error names the key, where the value came from (the file, a ``base:`` file, the variant or the
command line), and what is allowed, so a typo never trains the wrong experiment silently.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
from collections.abc import Iterable, Mapping
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


@functools.lru_cache(maxsize=512)
def _parse_once(text: str) -> Any:
    """Parsed YAML by its text: a config load reads default.yaml, the variants and a base chain,
    and `cvd reproduce` loads each of its ~100 configs several times; the text is read each time
    (an edited file is parsed anew), the parse is not repeated. Callers get a deep copy."""
    return _yaml_load(text)


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
            data = copy.deepcopy(_parse_once(handle.read()))
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


def _load_with_bases(
    path: Path, seen: tuple[Path, ...] = (), sources: dict[str, str] | None = None
) -> dict[str, Any]:
    """The file merged over its ``base:`` chain; ``sources`` gets the file that set each key."""
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
        inherited = _load_with_bases(path.parent / base, (*seen, path), sources)
        inherited.pop("meta", None)  # provenance describes its own file only, never its children
        merged = merge(merged, inherited)
    if sources is not None:
        for key in _flatten_keys(data):
            sources[key] = str(path)
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
    check_declared(config, sources)


_ABSENT = object()


def _source_of(sources: Mapping[str, str], key: str) -> str | None:
    """Where ``key`` was set: its own entry, else the nearest enclosing mapping's."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def check_declared(
    config: Mapping[str, Any], sources: Mapping[str, str] | None = None, *, open_sections: bool = False
) -> None:
    """Check every declared value (type, range, choices: :data:`cvd.schema.OPTIONS`); with
    ``open_sections`` also the recipe's ``loss:`` options, ``data.options``, ``eval.options``,
    ``data.sampler_options`` and ``model.head.kwargs`` against what their code declares."""
    from cvd.schema import OPTIONS, check_mapping, check_value
    from cvd.schema import open_sections as declared_sections

    sources = sources or {}

    def where(key: str) -> str:
        source = _source_of(sources, key)
        return f" (set in {source})" if source else ""

    for key, option in OPTIONS.items():
        value = get_dotted(config, key, _ABSENT)
        if value is _ABSENT or (option.kind == "any" and not option.choices):
            continue  # a key an older saved config lacks: the code's default applies
        check_value(key, value, option, where(key))
    for section in declared_sections(config) if open_sections else []:
        given = get_dotted(config, section.key, None) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"config key {section.key!r}{where(section.key)} must be a mapping")
        check_mapping(section.key, given, section.options, section.owner, where)


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
    strict: bool = False,
) -> dict[str, Any]:
    """Resolve default <- experiment file (with its bases) <- overrides, validated against the default.

    ``strict`` also checks the free-form mappings (``loss:``, ``data.options``, ``eval.options``,
    ``data.sampler_options``, ``model.head.kwargs``) against what their code declares; ``cvd fit``
    loads strictly, library callers that fill those mappings themselves may not.
    """
    return resolve_config(path, overrides, default=default, strict=strict)[0]


def resolve_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    *,
    default: str | os.PathLike[str] | None = None,
    strict: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`load_config` and where each key's value came from (``--explain``): a file of the
    ``base:`` chain, the default file, the CVD variant, or a command-line override."""
    default_path = Path(default) if default is not None else packaged_config_path()
    schema = read_yaml(default_path)
    config = copy.deepcopy(schema)
    sources: dict[str, str] = {}
    if path is not None:
        experiment = _load_with_bases(Path(path), sources=sources)
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
    given_cvd = config["cvd"]
    config["cvd"] = apply_cvd_variant(given_cvd)
    variant = config["cvd"]["variant"]
    preset = cvd_variants()[variant]
    for key in config["cvd"]:
        if given_cvd.get(key) is None and key in preset:
            sources[f"cvd.{key}"] = f"{CVD_VARIANTS} (cvd.variant={variant})"
    check_declared(config, sources, open_sections=strict)  # the variant's values, the open mappings
    _check_cvd_combination(config, sources)
    return config, sources


def _check_cvd_combination(config: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """The cvd values that depend on each other (checked where the model reads them), now."""
    from cvd.models.model import resolve_cvd_config

    try:
        resolve_cvd_config(config["cvd"])
    except ConfigError as error:
        key = str(error).split(":", 1)[0]
        source = _source_of(sources, key)
        raise ConfigError(f"{error}" + (f" (set in {source})" if source else "")) from None


def explain(config: Mapping[str, Any], sources: Mapping[str, str], key: str) -> str:
    """``--explain KEY``: the resolved value, its declaration (type, range, default, help) and
    where the value was set, so a surprising value can be traced to its file or override."""
    from cvd.schema import MISSING, OPTIONS, open_sections

    value = get_dotted(config, key, _ABSENT)
    if value is _ABSENT:
        known = sorted(_flatten_keys(config))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"--explain {key}: not a key of the resolved config{hint}")
    option = OPTIONS.get(key)
    owner = ""
    default: Any = MISSING
    for section in open_sections(config):
        if key.startswith(section.key + "."):
            option = section.options.get(key[len(section.key) + 1 :], option)
            owner = f" (declared by {section.owner})"
    if option is not None and option.default is not MISSING:
        default = option.default
    if default is MISSING:
        default = get_dotted(read_yaml(packaged_config_path()), key, MISSING)
    source = _source_of(sources, key) or f"{DEFAULT_CONFIG} (the packaged default)"
    lines = [f"{key}: {_inline(value)}"]
    if option is not None:
        lines.append(f"  allowed: {option.describe()}{owner}")
        if option.help:
            lines.append(f"  help: {option.help}")
    name = key.split(".", 1)[-1]
    variants = cvd_variants()
    if key.startswith("cvd.") and default is None and any(name in v for v in variants.values()):
        presets = ", ".join(f"{v}: {_inline(values.get(name))}" for v, values in variants.items())
        lines.append(f"  default: the variant's ({presets})")
    elif default is not MISSING:
        lines.append(f"  default: {_inline(default)}")
    lines.append(f"  set in: {source}")
    return "\n".join(lines)


def _inline(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


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
