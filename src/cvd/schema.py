"""Declared config options: type, allowed range or choices and help, checked before anything runs.

Every key's *default* lives in one place: ``cvd/configs/default.yaml`` for the core sections (the
``cvd.*`` keys it leaves null take their variant's value from ``cvd_variants.yaml``), the
:class:`Option` declaration itself for the options of a recipe (``loss``). The declarations here
add what a default cannot say: the allowed range, the choices (read from the registries, so a new
sampler or protocol needs no edit here) and a one-line help that ``cvd fit --explain KEY`` prints.

The options of a dataset (``data.options``), its evaluation splits (``eval.options``), a sampler
(``data.sampler_options``) and a head (``model.head.kwargs``) are the keyword arguments of the
class or function that takes them: their signature is their declaration, so a typo is caught
before the run with the likely name, and the code never lists them twice.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cvd.errors import ConfigError

MISSING: Any = object()  # no default declared here (it lives in default.yaml)


@dataclass(frozen=True)
class Option:
    """One config value: its kind, allowed range or choices, default and a line of help.

    ``kind`` is ``"int"``, ``"float"``, ``"bool"``, ``"str"``, ``"size"`` (an int or
    ``[height, width]``), ``"list"`` or ``"any"``; ``low``/``high`` bound numbers (and a size's
    sides, a list's items), open where ``low_open``/``high_open`` say so; ``choices`` is a list or
    a function returning one (a registry's names). ``nullable`` allows ``null``.
    """

    kind: str = "any"
    help: str = ""
    default: Any = MISSING
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    nullable: bool = True
    length: int | None = None  # lists: exact number of items

    def allowed_choices(self) -> list[Any] | None:
        """The choices, read from the registry now when they are a function."""
        if self.choices is None:
            return None
        return list(self.choices() if callable(self.choices) else self.choices)

    def describe(self) -> str:
        """What a valid value looks like, e.g. ``a number in (0, 1)``."""
        choices = self.allowed_choices()
        if choices is not None:
            return "one of: " + ", ".join(str(choice) for choice in choices)
        noun = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "str": "a string",
            "size": "an integer or [height, width] of integers",
            "list": "a list" if self.length is None else f"a list of {self.length} numbers",
        }.get(self.kind, "a value")
        text = noun + self._range_text(" with each item" if self.kind in ("size", "list") else "")
        return text + (" (or null)" if self.nullable and self.kind != "any" else "")

    def _range_text(self, prefix: str) -> str:
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"{prefix} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{prefix} {'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{prefix} {'<' if self.high_open else '<='} {_num(self.high)}"
        return ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not allowed, or ``None`` when it is."""
        if value is None:
            return None if self.nullable else "must be set"
        choices = self.allowed_choices()
        if choices is not None:
            if value in choices and not (isinstance(value, bool) and True not in choices):
                return None
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"is not allowed{hint}; choose one of: {', '.join(str(c) for c in choices)}"
        if self.kind == "bool":
            return None if isinstance(value, bool) else "must be true or false"
        if self.kind == "str":
            return None if isinstance(value, str) else "must be a string"
        if self.kind in ("int", "float"):
            return self._number_problem(value, self.kind == "int")
        if self.kind == "size":
            if isinstance(value, int) and not isinstance(value, bool):
                return self._number_problem(value, True)
            if isinstance(value, list | tuple) and len(value) == 2:
                problems = [self._number_problem(item, True) for item in value]
                return None if not any(problems) else f"must be {self.describe()}"
            return f"must be {self.describe()}"
        if self.kind == "list":
            if not isinstance(value, list | tuple) or (self.length is not None and len(value) != self.length):
                return f"must be {self.describe()}"
            bounded = self.low is not None or self.high is not None
            if bounded and any(self._number_problem(item, False) for item in value):
                return f"must be {self.describe()}"
        return None

    def _number_problem(self, value: Any, integer: bool) -> str | None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (integer and not isinstance(value, int))
        ):
            return f"must be {self.describe()}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            return f"is out of range: must be {self.describe()}"
        return None


def declared_defaults(options: Mapping[str, Option]) -> dict[str, Any]:
    """The defaults of a mapping's declared options (those that declare one)."""
    return {key: option.default for key, option in options.items() if option.default is not MISSING}


def label_smoothing_option(default: float) -> Option:
    """`loss.label_smoothing` as every recipe with a cross-entropy declares it (its own default)."""
    return Option(
        "float", "label smoothing of the cross-entropy", default=default, low=0, high=1, high_open=True,
        nullable=False,
    )  # fmt: skip


def logit_scale_option() -> Option:
    """`loss.logit_scale_init` of the InfoNCE recipes: the learnable scale starts at 1 / 0.07."""
    return Option(
        "float", "initial logit scale (1 / temperature)", default=1 / 0.07, low=0, low_open=True,
        nullable=False,
    )  # fmt: skip


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _names(module: str, attribute: str, *extra: str) -> Callable[[], list[str]]:
    def names() -> list[str]:
        import importlib

        return [*extra, *sorted(getattr(importlib.import_module(module), attribute))]

    return names


def _cvd_variants() -> list[str]:
    from cvd.config import cvd_variants

    return sorted(cvd_variants())


def _head_names() -> list[str]:
    import cvd.baselines  # noqa: F401  (the recipes register their heads)
    from cvd.models.heads import HEADS

    return sorted(HEADS)


def _centre_modes() -> list[Any]:
    from cvd.models.cvd import CENTRE_MODES

    return [*CENTRE_MODES, True, False]


def _cvd_names(attribute: str) -> Callable[[], list[str]]:
    def names() -> list[str]:
        from cvd.models import cvd

        return list(getattr(cvd, attribute))

    return names


def _estimators() -> list[str]:
    from cvd.losses.independence import ESTIMATORS

    return list(ESTIMATORS)


POSITIVE_INT = {"kind": "int", "low": 1}
NON_NEGATIVE_INT = {"kind": "int", "low": 0}

# The core sections (their defaults: default.yaml; the cvd.* nulls: cvd_variants.yaml).
OPTIONS: dict[str, Option] = {
    "name": Option("str", "run name: one folder inside output_dir"),
    "seed": Option(**NON_NEGATIVE_INT, nullable=False, help="random seed of the run"),
    "output_dir": Option("str", "parent folder of the run folder", nullable=False),
    "deterministic": Option("bool", "torch deterministic algorithms (slower)", nullable=False),
    "data.dataset": Option(
        choices=_names("cvd.data", "DATASETS"), nullable=False, help="benchmark (cvd.data.DATASETS)"
    ),
    "data.root": Option("str", "the benchmark's root folder"),
    "data.query_size": Option("size", "[height, width] (or one side) of the query view", low=1),
    "data.satellite_size": Option("size", "[height, width] (or one side) of the satellite view", low=1),
    "data.batch_size": Option(**POSITIVE_INT, nullable=False, help="global training batch"),
    "data.eval_batch_size": Option(**POSITIVE_INT, nullable=False, help="evaluation batch per rank"),
    "data.num_workers": Option(**NON_NEGATIVE_INT, nullable=False, help="data-loading processes (0 = main)"),
    "data.sampler": Option(
        choices=_names("cvd.data.samplers", "SAMPLERS", "auto"),
        nullable=False,
        help="training batch sampler (auto = the recipe's own)",
    ),
    "data.strict_images": Option("bool", "true: the first unreadable image stops the run", nullable=False),
    "data.max_skipped_share": Option(
        "float", "fit fails when unreadable images cost more than this share", low=0, high=1, nullable=False
    ),
    "data.val_fraction": Option(
        "float", "share of training locations held out for validation", low=0, high=1, high_open=True
    ),
    "data.val_seed": Option(**NON_NEGATIVE_INT, help="which locations are held out"),
    "model.baseline": Option(
        choices=_names("cvd.baselines", "RECIPES"), nullable=False, help="recipe (cvd.baselines.RECIPES)"
    ),
    "model.backbone.name": Option("str", "timm model name", nullable=False),
    "model.backbone.pretrained": Option("any", "false | true (offline or hub weights) | a weights path"),
    "model.head.name": Option(choices=_head_names, nullable=False, help="head (cvd.models.heads.HEADS)"),
    "model.share_weights": Option("bool", "one encoder for both views", nullable=False),
    "model.channels_last": Option("bool", "channels-last memory format", nullable=False),
    "model.num_classes": Option(**POSITIVE_INT, help="set by the engine from the training set"),
    "model.init_from": Option("str", "start from a run, release or .safetensors"),
    "cvd.enabled": Option("bool", "add the CVD module", nullable=False),
    "cvd.variant": Option(choices=_cvd_variants, help="fills the cvd keys left null (cvd_variants.yaml)"),
    "cvd.split": Option(choices=_cvd_names("SPLITS"), help="how z splits into content and viewpoint"),
    "cvd.alpha": Option(
        "float", "conv split: share of channels for content", low=0, high=1, low_open=True, high_open=True
    ),
    "cvd.squeeze": Option("bool", "conv split: false = content and viewpoint both keep d"),
    "cvd.kernel_size": Option(choices=[1, 3, 5, 7], help="conv split: kernel of the two split convs"),
    "cvd.init": Option(choices=_cvd_names("SPLIT_INITS"), help="conv split's initialisation"),
    "cvd.viewpoint_channels": Option(**POSITIVE_INT, help="complement split: viewpoint subspace size"),
    "cvd.detach_backbone": Option("bool", "true: the constraints train the CVD module only"),
    "cvd.retrieval_trains_split": Option("bool", "complement split: retrieval trains the subspace"),
    "cvd.centre": Option(choices=_centre_modes, help="remove each view's mean before the split"),
    "cvd.recon_target": Option(
        choices=_cvd_names("RECONSTRUCTION_TARGETS"), help="what the decoders rebuild"
    ),
    "cvd.recon_size": Option(**POSITIVE_INT, help="image target: short side of the downsampled image"),
    "cvd.decoder_channels": Option(**NON_NEGATIVE_INT, help="decoders' width (0: affine, pooled only)"),
    "cvd.decoder_init": Option(choices=["default", "zero"], help="pooled-feature decoder's start"),
    "cvd.independence": Option("bool", "L_iic (intra-view independence)", nullable=False),
    "cvd.iic_estimator": Option(choices=_estimators, help="L_iic estimator"),
    "cvd.iic_momentum": Option(
        "float", "channel_pairs: weight of the current batch", low=0, high=1, low_open=True
    ),
    "cvd.reconstruction": Option("bool", "L_irc (inter-view reconstruction)", nullable=False),
    "cvd.n_projections": Option(**POSITIVE_INT, help="paper estimator's random slices"),
    "cvd.lambda": Option("list", "[lambda1 (iic), lambda2 (irc), lambda3 (loc)]", length=3, low=0),
    "cvd.lr_scale": Option("float", "learning-rate factor of the CVD module", low=0, low_open=True),
    "cvd.weight_decay_scale": Option("float", "weight-decay factor of the CVD module", low=0),
    "cvd.tau": Option("float", "temperature of CVD's InfoNCE", low=0, low_open=True, nullable=False),
    "cvd.loc": Option(
        choices=["auto", "baseline", "infonce", "bi-infonce", "none"], help="CVD's L_loc", nullable=False
    ),
    "optim.name": Option(choices=["adamw", "sgd"], nullable=False, help="optimiser"),
    "optim.lr": Option("float", "learning rate", low=0, low_open=True, nullable=False),
    "optim.weight_decay": Option("float", "weight decay", low=0, nullable=False),
    "optim.momentum": Option("float", "SGD momentum", low=0, high=1, high_open=True),
    "optim.backbone_lr_scale": Option("float", "learning-rate factor of the encoder", low=0),
    "optim.clip_grad": Option("float", "max gradient norm (null = no clipping)", low=0, low_open=True),
    "optim.accumulate": Option(**POSITIVE_INT, nullable=False, help="micro-batches per optimiser step"),
    "optim.sam": Option("any", "sharpness-aware minimisation: {rho, adaptive, eta} (null = off)"),
    "schedule.name": Option(
        choices=["cosine", "step", "multistep", "constant"], nullable=False, help="learning-rate schedule"
    ),
    "schedule.epochs": Option(**POSITIVE_INT, nullable=False, help="training epochs"),
    "schedule.warmup_epochs": Option("float", "linear warm-up, in epochs", low=0),
    "schedule.step_size": Option(**NON_NEGATIVE_INT, help="step: epochs between decays"),
    "schedule.milestones": Option("list", "multistep: epochs of decay", low=0),
    "schedule.gamma": Option("float", "decay factor", low=0, low_open=True),
    "schedule.max_steps": Option(**POSITIVE_INT, help="stop after this many optimiser steps"),
    "train.device": Option(choices=["auto", "cpu", "cuda"], nullable=False, help="device"),
    "train.precision": Option(choices=["auto", "fp32", "bf16", "fp16"], nullable=False, help="precision"),
    "train.log_every": Option(**POSITIVE_INT, nullable=False, help="optimiser steps between log lines"),
    "train.sync_bn": Option("bool", "synchronised batch norm (DDP)", nullable=False),
    "eval.protocol": Option(
        choices=_names("cvd.evaluation.protocols", "PROTOCOLS", "auto"),
        nullable=False,
        help="evaluation protocol (auto = the dataset's own)",
    ),
    "eval.gallery_variant": Option(
        choices=_names("cvd.data.university1652", "GALLERY_VARIANTS"), help="gallery variant"
    ),
    "eval.flip_tta": Option("bool", "flip test-time augmentation", nullable=False),
    "eval.every_epochs": Option(**NON_NEGATIVE_INT, nullable=False, help="0 = only after training"),
    "eval.chunk_size": Option(**POSITIVE_INT, nullable=False, help="queries per similarity chunk"),
    "eval.max_queries": Option(**POSITIVE_INT, help="evaluate on the first N queries only"),
    "checkpoint.every_steps": Option(**NON_NEGATIVE_INT, nullable=False, help="0 = every epoch's end"),
    "checkpoint.keep_last": Option(**NON_NEGATIVE_INT, nullable=False, help="checkpoints kept (0 = all)"),
}


@dataclass
class OpenSection:
    """The declaration of a free-form mapping: the option names it takes, found for a config."""

    key: str
    options: Mapping[str, Option] = field(default_factory=dict)
    owner: str = ""  # what declares them, for the error


def check_value(key: str, value: Any, option: Option, where: str = "") -> None:
    """Raise a one-line :class:`ConfigError` when ``value`` breaks ``option``'s declaration."""
    problem = option.problem(value)
    if problem is not None:
        shown = "null" if value is None else repr(value)  # as the YAML that set it says
        raise ConfigError(f"config key {key!r}{where} = {shown} {problem}")


def check_keys(
    prefix: str, given: Mapping[str, Any], known: Sequence[str], owner: str, where: Callable[[str], str]
) -> None:
    """Reject keys of ``given`` not in ``known``: one line naming the key, its source, the likely key."""
    for key in given:
        if key in known:
            continue
        dotted = f"{prefix}.{key}"
        close = difflib.get_close_matches(str(key), list(known), n=1)
        hint = f"; did you mean '{prefix}.{close[0]}'?" if close else ""
        allowed = ", ".join(sorted(known)) or "(none)"
        raise ConfigError(
            f"unknown config key {dotted!r}{where(dotted)} for {owner}{hint} Allowed: {allowed}"
        )


def check_mapping(
    prefix: str,
    given: Mapping[str, Any],
    options: Mapping[str, Option],
    owner: str,
    where: Callable[[str], str] = lambda key: "",
) -> None:
    """Check a free-form mapping against its declaration: every key known, every value allowed."""
    check_keys(prefix, given, list(options), owner, where)
    for name, value in given.items():
        option = options.get(name)
        if option is not None:
            check_value(f"{prefix}.{name}", value, option, where(f"{prefix}.{name}"))


_ANNOTATION_KINDS = frozenset({"int", "float", "bool", "str"})


def _kind_of(annotation: Any) -> tuple[str, bool]:
    """(kind, nullable) of a parameter annotation such as ``"int"`` or ``"float | None"``; any other
    annotation is ``"any"`` (checked by the code that reads it)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [part.strip() for part in str(text).split("|")]
    nullable = "None" in parts
    kinds = [part for part in parts if part != "None"]
    if len(kinds) == 1 and kinds[0] in _ANNOTATION_KINDS:
        return kinds[0], nullable
    return "any", True


def signature_options(
    function: Callable[..., Any],
    skip: int = 0,
    exclude: Sequence[str] = (),
    declarations: Mapping[str, Option] | None = None,
) -> dict[str, Option] | None:
    """The keyword options of ``function``: its signature declares the names, defaults and (from
    the annotations) kinds; ``declarations`` add the ranges, choices and help its owner states
    beside its code. ``None`` when it takes ``**kwargs`` (anything goes). ``skip`` drops leading
    positional parameters."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    declarations = declarations or {}
    options: dict[str, Option] = {}
    for parameter in parameters[skip:]:
        if parameter.name in ("self", *exclude) or parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        default = MISSING if parameter.default is inspect.Parameter.empty else parameter.default
        kind, nullable = _kind_of(parameter.annotation)
        declared = declarations.get(parameter.name)
        if declared is None:
            declared = Option(kind, f"argument of {function.__qualname__}", nullable=nullable)
        elif kind != "any":  # the annotation says whether null is allowed
            declared = replace(
                declared,
                kind=kind if declared.kind == "any" else declared.kind,
                nullable=nullable and declared.nullable,
            )
        options[parameter.name] = replace(declared, default=default)  # the signature's default
    return options


def open_sections(config: Mapping[str, Any]) -> list[OpenSection]:
    """The declarations of the free-form mappings that ``config``'s names select."""
    import cvd.baselines  # noqa: F401  (recipes register their heads)
    from cvd.baselines import RECIPES
    from cvd.data import DATASETS
    from cvd.data.samplers import SAMPLERS
    from cvd.models.heads import HEAD_OPTIONS, HEADS

    data = config.get("data") or {}
    model = config.get("model") or {}
    sections: list[OpenSection] = []
    recipe = RECIPES.get(model.get("baseline"))
    if recipe is not None and recipe.loss_schema is not None:
        sections.append(OpenSection("loss", recipe.loss_schema, f"recipe {recipe.name!r}"))
    if recipe is not None:
        sections.append(
            OpenSection(
                "data.augment", recipe.augment_schema, f"the training transform of recipe {recipe.name!r}"
            )
        )
    dataset = DATASETS.get(data.get("dataset"))
    if dataset is not None:
        declared = signature_options(
            dataset.__init__,
            exclude=("root", "strict"),
            declarations=getattr(dataset, "option_declarations", None),
        )
        if declared is not None:
            sections.append(OpenSection("data.options", declared, f"dataset {data.get('dataset')!r}"))
        splits = getattr(dataset, "eval_splits", None)
        declarations = getattr(dataset, "eval_option_declarations", None)
        declared = signature_options(splits, declarations=declarations) if splits is not None else None
        if declared is not None:
            sections.append(
                OpenSection("eval.options", declared, f"the eval splits of dataset {data.get('dataset')!r}")
            )
    sampler = data.get("sampler")
    if sampler == "auto" and recipe is not None:
        sampler = recipe.default_sampler
    if sampler in SAMPLERS:
        declared = signature_options(
            SAMPLERS[sampler].__init__,
            exclude=(
                "pairs",
                "labels",
                "labels_or_pairs",
                "batch_size",
                "seed",
                "num_replicas",
                "rank",
                "drop_last",
            ),
            declarations=getattr(SAMPLERS[sampler], "option_declarations", None),
        )
        if declared is not None:
            sections.append(OpenSection("data.sampler_options", declared, f"sampler {sampler!r}"))
    backbone = (model.get("backbone") or {}).get("name")
    if isinstance(backbone, str):
        from cvd.models.backbones import timm_kwargs_schema

        declared = timm_kwargs_schema(backbone)
        if declared is not None:
            sections.append(OpenSection("model.backbone.kwargs", declared, f"timm model {backbone!r}"))
    head = (model.get("head") or {}).get("name")
    if head in HEADS:
        declarations = {**HEAD_OPTIONS, **getattr(HEADS[head], "option_declarations", {})}
        declared = signature_options(HEADS[head], skip=1, declarations=declarations)
        if declared is not None and recipe is not None:  # keys the recipe takes out before the head
            consumed = Option(help=f"read by recipe {recipe.name!r}, not by the head")
            declared = {**declared, **dict.fromkeys(recipe.model_keys, consumed)}
        if declared is not None:
            sections.append(OpenSection("model.head.kwargs", declared, f"head {head!r}"))
    return sections
