"""The typed schema of ``params.yaml``, validated once at the start of every stage.

A typo such as ``phase2.lrr`` would otherwise be ignored silently and the run would use the
default; every stage therefore refuses unknown keys, wrong types and out-of-range values
before it does any work.
"""

from __future__ import annotations

import copy
import difflib
import enum
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import YAMLError
from ruamel.yaml.events import AliasEvent

from src.finetune.environment import experiment_baseline
from src.finetune.errors import PipelineError, first_line
from src.finetune.model.backbones import BACKBONES, Backbone

# Bounds are what the stages can run: seeds are 32-bit for NumPy and TensorFlow; epochs,
# batches and sizes stop where a run would only fail later, or never end. A learning rate
# only has to be finite: one too high ends in the one-line "training diverged" error.
Epochs = Annotated[int, Field(ge=1, le=10_000)]
BatchSize = Annotated[int, Field(ge=1, le=8192)]
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Limit = Annotated[int, Field(ge=1, le=1_000_000_000)]
# The most Keras's RandAugment can pick from: it draws operations from nine.
RANDAUGMENT_OPERATIONS = 9
MAX_TTA_VIEWS = 8
SHIFTED_VIEWS = 4  # TTA's views without mirror images: shifted up, down, left and right


class Phase(enum.StrEnum):
    """A training phase, by the name of its params.yaml section."""

    EXTRACT = "phase1"  # feature extraction: the base frozen, a new head trained
    FINETUNE = "phase2"  # fine-tuning: the top of the base unfrozen, continuing the epochs

    @property
    def number(self) -> int:
        """1 or 2, as the report, the figure and the ``phase`` metric count phases."""
        return 1 if self is Phase.EXTRACT else 2


class Section(BaseModel):
    """Strict: no unknown keys, no silent coercion of strings into numbers."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# A path or URL as text: not empty, no NUL byte (which no file system takes), not absurdly long.
PathText = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")]


# The data keys each source reads (see ``data.sources``); it ignores the others.
HELD_OUT = ("val_split", "train_limit", "test_limit", "image_size", "dedupe")
SOURCE_KEYS = {
    "cifar10": ("url", "archive", "sha256", *HELD_OUT),
    "cifar100": ("url", "archive", "sha256", *HELD_OUT),
    "folder": ("folder", "test_split", *HELD_OUT),
}


class DataParams(Section):
    """Where the images come from and how they are held out; ``SOURCE_KEYS`` says which keys
    each source reads."""

    source: Literal["cifar10", "cifar100", "folder"]
    url: PathText | None
    archive: PathText | None
    sha256: str | None = Field(pattern=r"^[0-9a-f]{64}$")
    folder: PathText
    val_split: float = Field(gt=0, lt=1)
    test_split: float = Field(gt=0, lt=1)
    train_limit: Limit | None = None
    test_limit: Limit | None = None
    image_size: int = Field(ge=32, le=1024)
    dedupe: bool

    @property
    def name(self) -> str:
        """The data's short name: the dataset's (``cifar10``), or the image folder's own
        (``digits`` for data/sample/digits)."""
        if self.source != "folder":
            return self.source
        return Path(self.folder).name or "images"

    def read_by_source(self) -> dict[str, Any]:
        """The keys the chosen source reads, with their values."""
        return {key: getattr(self, key) for key in ("source", *SOURCE_KEYS[self.source])}


class ModelParams(Section):
    backbone: str
    weights: PathText
    dropout: float = Field(ge=0, lt=1)

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value not in BACKBONES:
            raise ValueError(f"unknown backbone {value!r}; use one of {', '.join(BACKBONES)}")
        return value

    @field_validator("weights")
    @classmethod
    def _known_weights(cls, value: str) -> str:
        if value in ("imagenet", "none") or _is_file(value):
            return value
        raise ValueError(
            f"expected imagenet, none or the path of an existing weights file, got {_quote(value)}"
        )

    @property
    def keras_weights(self) -> str | None:
        """The value keras.applications expects: None for random initialisation."""
        return None if self.weights == "none" else self.weights


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # a name too long for the file system
        return False


class AugmentParams(Section):
    """Training-time augmentation; every key at its default leaves the images untouched."""

    flip: bool
    crop_pad: int = Field(ge=0, le=16)
    rotation: float = Field(ge=0, le=0.5)
    color_jitter: float = Field(ge=0, le=1)
    randaugment: int = Field(ge=0, le=RANDAUGMENT_OPERATIONS)
    erasing: float = Field(ge=0, le=1)
    mixup: float = Field(ge=0, le=1)
    cutmix: float = Field(ge=0, le=1)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on: then a one-view cache of the frozen part is stale."""
        return any(bool(value) for value in self.model_dump().values())

    @property
    def mixes_labels(self) -> bool:
        """MixUp and CutMix blend pairs of images and their labels."""
        return self.mixup > 0 or self.cutmix > 0


class PhaseParams(Section):
    """What both training phases share: the optimizer, its schedule, the loss, stopping."""

    epochs: Epochs
    lr: LearningRate
    batch_size: BatchSize
    optimizer: Literal["adam", "adamw", "sgd"]
    weight_decay: float = Field(ge=0, lt=1)
    schedule: Literal["constant", "cosine"]
    warmup_epochs: int = Field(ge=0, le=10_000)
    label_smoothing: float = Field(ge=0, lt=1)
    early_stopping: int = Field(ge=0, le=10_000)
    ema: float = Field(ge=0, lt=1)

    @model_validator(mode="after")
    def _ema_a_decay(self) -> PhaseParams:
        if 0 < self.ema < 0.5:
            raise ValueError(
                f"ema: {self.ema} is not a moving-average decay; use 0 (off) or a value such "
                "as 0.999 (the closer to 1, the longer the average)"
            )
        if self.ema and self.early_stopping:
            raise ValueError(
                "ema and early_stopping both choose the weights the phase keeps (the average, "
                "or the best epoch's); set one of them to 0"
            )
        return self

    @model_validator(mode="after")
    def _warmup_within_the_phase(self) -> PhaseParams:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(
                f"warmup_epochs: {self.warmup_epochs} must be fewer than the phase's epochs "
                f"({self.epochs}); lower it or raise epochs"
            )
        return self


class Phase1Params(PhaseParams):
    cache_features: bool


class Phase2Params(PhaseParams):
    # How much of the base phase 2 unfreezes: layers counted from the top (an integer, the
    # course's unit), or a fraction of the base's layers (0.5 = the top half, 1.0 = all),
    # which means the same depth on every backbone.
    unfreeze_last: int | float
    lr_decay: float = Field(gt=0, le=1)
    unfreeze_every: int = Field(ge=0, le=10_000)
    train_batchnorm: bool

    @field_validator("unfreeze_last")
    @classmethod
    def _layers_or_fraction(cls, value: int | float) -> int | float:
        if (isinstance(value, int) and value >= 0) or (isinstance(value, float) and 0 < value <= 1):
            return value
        raise ValueError(
            f"{_quote(value)} is neither a number of layers (0, 1, 2, ...) nor a fraction of "
            "them in (0, 1] such as 0.5 (the top half) or 1.0 (all)"
        )


class EvaluateParams(Section):
    tta: int = Field(ge=0, le=MAX_TTA_VIEWS)
    tta_flip: bool
    classical: Literal["svc", "logistic", "knn", "none"]
    classical_images: int = Field(ge=10, le=1_000_000)

    @model_validator(mode="after")
    def _views_there_are(self) -> EvaluateParams:
        if not self.tta_flip and self.tta > SHIFTED_VIEWS:
            raise ValueError(
                f"tta: {self.tta} views without mirror images (tta_flip: false); there are "
                f"{SHIFTED_VIEWS} shifted ones, use 0..{SHIFTED_VIEWS}"
            )
        return self


ExportFormat = Literal["saved_model", "onnx", "litert", "litert_int8"]


class ExportParams(Section):
    formats: list[ExportFormat] = Field(max_length=4)
    calibration_images: int = Field(ge=1, le=10_000)

    @field_validator("formats")
    @classmethod
    def _each_once(cls, formats: list[str]) -> list[str]:
        if len(set(formats)) != len(formats):
            raise ValueError(f"{formats} names a format twice; list each once")
        return formats


Switch = Literal["auto", True, False]


class TrainParams(Section):
    class_weight: Literal["none", "balanced"]
    cache_budget_gb: float = Field(ge=0, le=4096)
    cached_views: int = Field(ge=0, le=64)
    deterministic: bool
    mixed_precision: Switch
    jit_compile: Switch
    distribution: Literal["auto", "none", "mirrored", "multi_worker"]
    worker_timeout_s: int = Field(ge=1, le=86_400)


class MlflowParams(Section):
    experiment: str = Field(min_length=1, max_length=500)
    log_models: bool
    # MLflow refuses '/' and ':' in a registered model's name
    registered_model: str | None = Field(
        min_length=1, max_length=500, pattern=r"^[^/:]*[^/:\s][^/:]*$"
    )


class Params(Section):
    seed: int = Field(ge=0, lt=2**32)
    data: DataParams
    model: ModelParams
    augment: AugmentParams
    phase1: Phase1Params
    phase2: Phase2Params
    evaluate: EvaluateParams
    export: ExportParams
    train: TrainParams
    tracker: Literal["mlflow", "none"]
    mlflow: MlflowParams

    @model_validator(mode="after")
    def _weights_the_backbone_has(self) -> Params:
        if self.model.weights == "imagenet" and not self.backbone.pretrained:
            raise ValueError(
                f"model.weights: {self.backbone.title} has no ImageNet weights (it is for smoke "
                "runs and tests); use none, or another backbone"
            )
        return self

    @model_validator(mode="after")
    def _unfreeze_within_the_backbone(self) -> Params:
        layers = BACKBONES[self.model.backbone].layers
        wanted = self.phase2.unfreeze_last
        if isinstance(wanted, int) and wanted > layers:
            raise ValueError(
                f"phase2.unfreeze_last: {wanted} is more than the {layers} layers of "
                f"{self.model.backbone}; use 0..{layers}, or a fraction of them such as "
                f"{min(1.0, round(wanted / 270, 2))} (1.0 = all) that fits every backbone"
            )
        return self

    def finetuned_part(self) -> str:
        """What phase 2 trains, in words (see ``trained_part``)."""
        return trained_part(self.unfrozen_layers(), self.phase2.train_batchnorm)

    def unfrozen_layers(self) -> int:
        """``phase2.unfreeze_last`` in layers of this backbone: as written, or its fraction of
        the base's layers (at least one)."""
        wanted, layers = self.phase2.unfreeze_last, self.backbone.layers
        return wanted if isinstance(wanted, int) else max(1, round(wanted * layers))

    @property
    def backbone(self) -> Backbone:
        return BACKBONES[self.model.backbone]

    @property
    def mlflow_experiment(self) -> str:
        """The MLflow experiment every stage logs to: ``mlflow.experiment``, or with ``auto``
        one per data, named after it (``cifar10-finetune``, ``digits-finetune``), so runs on
        the digits never sit among runs on CIFAR-10."""
        if self.mlflow.experiment != "auto":
            return self.mlflow.experiment
        return f"{self.data.name}-finetune"

    def phase(self, phase: Phase) -> Phase1Params | Phase2Params:
        """The section of a training phase."""
        return self.phase1 if phase is Phase.EXTRACT else self.phase2

    def flat(self) -> dict[str, Any]:
        """Dotted keys as in params.yaml (``phase2.lr``), the way MLflow and DVC name them."""
        return flatten(self.model_dump())

    def select(self, keys: tuple[str, ...]) -> dict[str, Any]:
        flat = self.flat()
        return {key: value for key, value in flat.items() if _selected(key, keys)}


def trained_part(unfreeze_last: int | None, train_batchnorm: bool = False) -> str:
    """What a phase trains, in the words the log, the report, the model card and the MLflow
    run's description all use: ``unfreeze_last`` base layers counted from the top, as
    ``phase2.unfreeze_last`` counts them, and whether BatchNormalization among them trains
    (``phase2.train_batchnorm``) or stays frozen."""
    if not unfreeze_last:
        return "the head"
    batchnorm = "BatchNorm training" if train_batchnorm else "BatchNorm frozen"
    return f"the head and the last {unfreeze_last} layers of the base, {batchnorm}"


def _selected(key: str, keys: tuple[str, ...]) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in keys)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested tree as dotted keys (``phase2.lr``), as params.yaml, DVC and MLflow name them."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the params file, or stop with one line naming the bad key; under
    `dvc exp run`, which wrote its ``-S`` values into the file before the stage started and
    leaves them there, the line also says how to put the committed file back."""
    path = Path(path)
    try:
        return check_params(read_yaml(path), where=path)
    except PipelineError as error:
        if not experiment_baseline():
            raise
        raise PipelineError(
            f"{error}; `dvc exp run -S` left this value in {path}: `git checkout {path}` puts "
            "the committed file back"
        ) from None


def check_params(raw: dict[str, Any], where: Path) -> Params:
    """Validate a params tree; ``where`` names its source in the one-line error."""
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise PipelineError(_describe(where, error)) from None


def read_yaml(path: Path, keep_comments: bool = False) -> dict[str, Any]:
    """A YAML mapping, or one line saying why the file is not one. With ``keep_comments``, a
    tree that writes back with its comments and layout (``write_params``): what a tool that
    writes params.yaml for a run (the demo, a tuning trial) starts from, so the documented
    file stays documented."""
    if not path.is_file():
        raise PipelineError(f"{path}: file not found; run the stage from the repository root")
    # YAML 1.2, like DVC itself: `dvc exp run -S phase2.lr=1e-4` writes 1e-4, which
    # YAML 1.1 loaders would read as a string.
    try:
        yaml = YAML() if keep_comments else YAML(typ="safe", pure=True)
        yaml.Composer = _NoAliases
        raw = yaml.load(path.read_text(encoding="utf-8"))
    except _AliasFound as alias:
        raise PipelineError(
            f"{path}: line {alias.line} uses the YAML alias *{alias.anchor}; write the value "
            "out (aliases are refused: a few of them can expand past all memory)"
        ) from None
    except YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise PipelineError(f"{path}: malformed YAML{line}: {problem}; fix the syntax") from None
    except UnicodeDecodeError as error:
        raise PipelineError(
            f"{path}: byte {error.start} is not UTF-8 text; save the file as UTF-8"
        ) from None
    except (ValueError, RecursionError) as error:  # a 5,000-digit number, lists nested deep
        reason = first_line(error, 80)
        raise PipelineError(f"{path}: a value YAML cannot read ({reason}); fix it") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return raw


class _AliasFound(Exception):
    """A YAML alias where plain values are expected (see ``_NoAliases``)."""

    def __init__(self, anchor: str, line: int) -> None:
        super().__init__(anchor, line)
        self.anchor, self.line = anchor, line


class _NoAliases(Composer):
    """Refuses a YAML alias (``*name``) as the document is composed, before anything is
    built from it: the project's files hold plain values, and a few hundred bytes of aliases
    to aliases expand to gigabytes (a YAML alias bomb) in whatever walks the result."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            raise _AliasFound(str(event.anchor), event.start_mark.line + 1)
        return super().compose_node(parent, index)


def apply_overrides(tree: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``tree`` with each dotted key of ``overrides`` set, as `dvc exp run -S`
    would set it."""
    tree = copy.deepcopy(tree)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted:
            raise PipelineError(f"{dotted!r}: a key is a dotted name such as phase2.lr")
        *sections, key = dotted.split(".")
        node = tree
        for depth, section in enumerate(sections):
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                where = ".".join(sections[: depth + 1])
                raise PipelineError(f"{dotted}: {where} is a value, not a section of params.yaml")
        node[key] = value
    return tree


def write_params(path: Path, tree: dict[str, Any]) -> None:
    """A params tree to ``path``, the YAML DVC writes (block style, keys in order)."""
    yaml = YAML()
    yaml.default_flow_style = False
    with path.open("w") as handle:
        yaml.dump(tree, handle)


def _describe(path: Path, error: ValidationError) -> str:
    # An unknown key is usually a typo, and the cause of the "missing key" beside it.
    details = sorted(error.errors(), key=lambda d: d["type"] != "extra_forbidden")
    first = _sentence(details[0])
    more = f" (and {len(details) - 1} more problem(s))" if len(details) > 1 else ""
    return f"{path}: {first}{more}"


def _sentence(detail: ErrorDetails) -> str:
    key = ".".join(str(part) for part in detail["loc"])
    kind = detail["type"]
    if kind == "extra_forbidden":
        section = _section_model(detail["loc"][:-1])
        allowed = list(section.model_fields)
        guess = difflib.get_close_matches(str(detail["loc"][-1]), allowed, n=1)
        hint = f"did you mean {guess[0]}? " if guess else ""
        return f"{key}: unknown key; {hint}allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{key}: missing key; add it (see the comments in params.yaml)"
    message = detail["msg"]
    if message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
        # A check across a section's keys names the key it is about: "warmup_epochs: ...".
        field, _, rest = message.partition(": ")
        if rest and field in _section_model(detail["loc"]).model_fields:
            return f"{key}.{field}: {rest}"
        return f"{key}: {message}" if key else message
    # "a valid dictionary or instance of EvaluateParams": the class is ours, not the user's
    message = re.sub(r" or instance of \w+", "", message)
    return f"{key}: {message.lower()}, got {_quote(detail['input'])}"


QUOTE = reprlib.Repr()  # keyword arguments only from Python 3.12
QUOTE.maxlevel, QUOTE.maxlist, QUOTE.maxdict, QUOTE.maxstring = 3, 4, 4, 60


def _quote(value: Any, limit: int = 80) -> str:
    """The offending value as written, cut short: one line even for a huge value, and never
    expanded in full (a YAML alias bomb nests lists exponentially)."""
    text = " ".join(QUOTE.repr(value).split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _section_model(loc: tuple[int | str, ...]) -> type[BaseModel]:
    model: type[BaseModel] = Params
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return model
        model = annotation
    return model
