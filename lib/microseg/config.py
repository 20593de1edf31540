"""One typed, validated configuration object, loaded from layered YAML files.

Layers, later ones winning key by key: ``conf/base.yaml``, the environment file
(``conf/local.yaml`` by default), any extra files, then ``key.path=value`` overrides.
A bad key or value fails at load with a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _check_month(value: str) -> str:
    if not MONTH.match(value):
        raise ValueError(f"{value!r} is not a month; write 'YYYY-MM'")
    return value


Month = Annotated[str, AfterValidator(_check_month)]   # "YYYY-MM"

STORAGE_SCHEMES = ("file", "dbfs", "s3", "s3a", "abfss", "gs", "hdfs")
TRACKING_SCHEMES = (*STORAGE_SCHEMES, "sqlite", "databricks", "http", "https")
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")   # two letters or more: "C:" is a drive
BASES = ("{root}", "{project}")                        # templates: the path starts there


def _check_location(value: str, schemes: tuple[str, ...]) -> str:
    """A path or URI from config: not empty, no NUL or line break, a known scheme (or none;
    /Volumes/... is a path), and no ``..`` that climbs above where the path starts."""
    if not value.strip():
        raise ValueError("is empty; give a path")
    if any(c in value for c in "\0\n\r"):
        raise ValueError(f"{value!r} holds a NUL byte or a line break")
    scheme = SCHEME.match(value)
    if scheme and scheme.group(1).lower() not in schemes:
        raise ValueError(f"{value!r}: scheme {scheme.group(1)!r} is not supported; write a path or use "
                         f"one of {', '.join(s + ':' for s in schemes)}")
    depth = 0
    for part in (urlsplit(value).path if scheme else value).split("/"):
        depth += -1 if part == ".." else int(part not in ("", ".", *BASES))
        if depth < 0:
            raise ValueError(f"{value!r}: '..' climbs above where the path starts; write the path it means")
    return value


StoragePath = Annotated[str, AfterValidator(lambda v: _check_location(v, STORAGE_SCHEMES))]
TrackingUri = Annotated[str, AfterValidator(lambda v: _check_location(v, TRACKING_SCHEMES))]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkConfig(_Strict):
    app_name: str = "microseg"
    master: str | None = None
    shuffle_partitions: int = Field(8, ge=1)
    arrow_batch_size: int = Field(1024, ge=1)
    conf: dict[str, str] = {}


class TablesConfig(_Strict):
    root: StoragePath = "lakehouse"
    catalog: str | None = None
    names: dict[str, str]
    pinned: dict[str, int] = {}   # table key -> Delta version to read (reproduce a recorded run)

    @field_validator("names")
    @classmethod
    def _two_part_names(cls, names: dict[str, str]) -> dict[str, str]:
        for key, name in names.items():
            if not re.fullmatch(r"[A-Za-z_][\w]*\.[A-Za-z_][\w]*", name):
                raise ValueError(f"tables.names.{key}={name!r}: use 'schema.table' (letters, digits, _)")
        return names


# The quarantine reasons the generator can plant (``sources/generator.py`` spoils each one).
INJECTABLE_REASONS = ("MALFORMED_LINE", "UNPARSABLE_DATE", "UNPARSABLE_AMOUNT", "UNPARSABLE_BALANCE",
                      "MISSING_CUSTOMER_ID", "MISSING_TXN_ID", "MISSING_DATE", "MISSING_AMOUNT", "DATE_OUT_OF_WINDOW",
                      "DATE_IN_FUTURE", "ABSURD_AMOUNT", "UNKNOWN_CURRENCY", "UNKNOWN_CATEGORY", "DUPLICATE_TXN_ID")


class GeneratorConfig(_Strict):
    customers: int = Field(2000, ge=1)
    months: int = Field(24, ge=2)
    start_month: Month = "2023-01"
    coarse_groups: int = Field(4, ge=1)
    micro_per_group: int = Field(6, ge=1, le=12)   # 1 steady + drifting/seasonal/regime variants
    tx_per_month: float = Field(18, gt=0)
    partitions: int = Field(8, ge=1)
    landing: StoragePath = "{root}/landing"      # where the raw files are written
    bad_rows: dict[str, float] = {}              # reason code -> share of rows to spoil

    @field_validator("bad_rows")
    @classmethod
    def _rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for reason, rate in rates.items():
            if reason not in INJECTABLE_REASONS:
                raise ValueError(f"cannot inject {reason!r}; choose from {sorted(INJECTABLE_REASONS)}")
            if not 0 <= rate <= 0.5:
                raise ValueError(f"{reason}: rate {rate} must be within [0, 0.5]")
        return rates


class SourceConfig(_Strict):
    # generator: the synthetic bank's landing (read as files); the others are a real source,
    # beside which the generate stage never runs
    adapter: Literal["generator", "files", "berka", "statements"] = "generator"
    path: StoragePath = "{root}/landing/transactions"   # file, folder or glob; {root}: tables.root
    mapping: StoragePath = "conf/sources/generated.yaml"
    loans: StoragePath | None = "{root}/landing/loans"   # loan book (customer_id, loan_status); null: none
    default_statuses: list[str] = ["B", "D"]     # loan statuses that count as default

    @property
    def synthetic(self) -> bool:
        """The source is the generator's synthetic bank: the only one ``generate`` writes."""
        return self.adapter == "generator"


class DateWindow(_Strict):
    start: Month = "2000-01"
    end: Month | None = None                       # null: no upper bound but today


class IngestConfig(_Strict):
    currencies: list[str] = ["EUR"]              # anything else is quarantined
    date_window: DateWindow = DateWindow()
    today: str | None = None                     # "YYYY-MM-DD" pins "the future"; null: the run date
    max_abs_amount: float = Field(10_000_000, gt=0)
    unknown_category: Literal["quarantine", "unclassified"] = "quarantine"
    pseudonymise: bool = False                   # customer and transaction ids -> HMAC-SHA256 pseudonyms at ingest
    pseudonym_key_env: str = "MICROSEG_PSEUDONYM_KEY"   # the variable holding the key (not the key)
    pseudonym_key_secret: str | None = None      # "scope/key" of a Databricks secret; wins over the variable
    quarantine_retention_days: int | None = Field(None, ge=1)   # older quarantine rows and files removed; null: kept


class SplitConfig(_Strict):
    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-9:
            raise ValueError("train + validation + test must add up to 1")
        return self


class SequencesConfig(_Strict):
    window_months: int = Field(24, ge=2)
    min_months: int = Field(6, ge=1)
    as_of: Month | None = None
    reference: Literal["as_of", "loan_date"] = "as_of"   # each customer's window end (prep/reference.py)
    split: SplitConfig = SplitConfig()


class ModelConfig(_Strict):
    kind: Literal["lstm", "feedforward"] = "lstm"
    hidden: int = Field(128, ge=1)
    layers: int = Field(2, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    objective: str | dict[str, float] = "profile"    # a named objective, or {part: weight} (model/objectives.py)
    embedding: Literal["last", "last_cell", "pooled", "seasonal"] = "seasonal"   # LSTM: which states make the customer vector
    learning_rate: float = Field(0.005, gt=0)
    lr_step_epochs: int | None = Field(None, ge=1)   # StepLR: multiply by lr_gamma every n epochs
    lr_gamma: float = Field(0.5, gt=0, le=1)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(30, ge=1)
    patience: int | None = Field(None, ge=1)         # early stopping on validation loss
    keep: Literal["last", "best"] = "last"           # weights registered: the last epoch's, or the best validation loss's
    steps_per_epoch: int | None = Field(None, ge=1)


class TrainConfig(_Strict):
    launcher: Literal["torch_distributor", "horovod", "single"] = "torch_distributor"
    loader: Literal["arrow", "petastorm"] = "arrow"   # petastorm: the pinned line only (pyarrow < 15)
    num_processes: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"   # auto: from the cores or GPUs
    local_mode: bool = True          # ranks on the driver; false: as Spark tasks on executors
    use_gpu: bool = False            # NCCL and one GPU per rank
    checkpoint_dir: StoragePath = "{root}/_work/checkpoints"   # must be shared storage on a cluster


class LabelsConfig(_Strict):
    liquidity_classes: int = Field(5, ge=2)
    horizon_months: int = Field(6, ge=1)     # liquidity: the months after the reference month


class SegmentConfig(_Strict):
    features: Literal["model", "traits"] = "model"   # the model.kind encoder's embeddings, or raw traits
    algorithm: Literal["kmeans", "bisecting_kmeans"] = "kmeans"
    coarse_k: int | None = Field(None, ge=1)         # null: choose from coarse_k_grid by silhouette
    coarse_k_grid: list[int] = [2, 3, 4, 5, 6, 7, 8]
    k: int | None = Field(None, ge=1)                # micro-segments per coarse segment; null: from micro_k_grid
    micro_k_grid: list[int] = [2, 3, 4, 5, 6, 7, 8]
    micro_k_criterion: Literal["bic", "silhouette"] = "bic"  # which eligible k of micro_k_grid is chosen
    micro_min_silhouette: float = Field(0.05, ge=-1, le=1)   # below it for every k: one micro-segment
    min_size: int | None = Field(None, ge=1)         # null: 0.2% of the customers, at least 5
    max_share: float = Field(0.8, gt=0, le=1)        # one segment above this share: degenerate
    sample_rows: int = Field(20_000, ge=100)         # per level: fit and choose k on samples this size
    max_iter: int = Field(30, ge=1)

    @field_validator("coarse_k_grid", "micro_k_grid")
    @classmethod
    def _grid(cls, grid: list[int]) -> list[int]:
        if not grid or min(grid) < 2:
            raise ValueError("needs at least one k, and every k >= 2")
        return sorted(set(grid))

    def min_size_for(self, customers: int) -> int:
        """The smallest segment allowed among ``customers``."""
        return self.min_size or max(5, round(0.002 * customers))


class MlflowConfig(_Strict):
    tracking_uri: TrackingUri | None = None
    registry_uri: str | None = None       # null: the tracking store ("databricks-uc" for Unity Catalog)
    experiment: str = "microseg"
    registered_model: str = "microseg_encoder"   # [catalog.schema.]name: letters, digits, _ (Unity Catalog's rule)
    alias: str = "champion"

    @field_validator("registered_model")
    @classmethod
    def _uc_name(cls, name: str) -> str:
        """The same rule in both registries, so a name that works locally works in Unity
        Catalog (which also gives every other kind its ``_<kind>`` suffix)."""
        parts = name.split(".")
        if len(parts) > 3 or not all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in parts):
            raise ValueError(f"{name!r}: use up to three dot-separated parts of letters, digits and _ "
                             "(Unity Catalog accepts no '-' or spaces), e.g. microseg_encoder")
        return name


class KnownSegmentsConfig(_Strict):
    """A file or table of known segments for the source's customers (segments from a
    previous system, a labelled pilot) to judge the segmentation against."""
    path: StoragePath | None = None              # file or folder; {root}: tables.root, {project}: this project
    table: str | None = None                     # or a table name (schema.table, catalog.schema.table)
    format: Literal["csv", "parquet", "delta"] = "csv"   # of ``path``
    options: dict[str, str] = {}                 # reader options, e.g. {sep: ";"}; csv reads a header row
    customer_id: str = "customer_id"             # the column of the source's customer ids
    segment: str = "segment"                     # the column of the known (micro-)segment
    coarse: str | None = None                    # the column of a known coarse group; null: none

    @model_validator(mode="after")
    def _one_place(self) -> KnownSegmentsConfig:
        if (self.path is None) == (self.table is None):
            raise ValueError("give exactly one of path (a file or folder) and table (a table name)")
        return self


class EvaluateConfig(_Strict):
    sample_rows: int = Field(20_000, ge=100)     # customers evaluated (a sample: small by construction)
    gbm_iterations: int = Field(100, ge=10)      # boosting rounds of every downstream GBM
    map_rows: int = Field(2_000, ge=100)         # points in the 2-D map
    e2e_epochs: int = Field(8, ge=1)             # the bespoke LSTM trained end-to-end on each label
    cv_folds: int = Field(5, ge=2)               # downstream: stratified k-fold over all labelled customers
    cv_repeats: int = Field(2, ge=1)             # ... repeated with reshuffled folds
    objectives: list[str] = ["current", "next", "multi_horizon", "reconstruct", "shape", "account",
                             "profile"]          # compared in-memory
    objective_epochs: int = Field(30, ge=1)      # epochs of each encoder in the objective comparison
    objective_seeds: int = Field(3, ge=1)        # seeds of that comparison (seed, seed + 1, ...)
    train_rows: int = Field(2_000, ge=50)        # the in-memory encoders and end-to-end LSTMs train on at most this many customers
    jobs: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"   # processes for its independent fits; auto: the driver's cores
    variants: list[Literal["lstm", "feedforward", "traits"]] = ["lstm", "feedforward", "traits"]
    known_segments: KnownSegmentsConfig | None = None   # null: the generator's ground truth, if any
    min_surrogate_r2: float = Field(0.3, le=1)   # lower fidelity: the surrogate explains nothing, no drivers


class Settings(_Strict):
    seed: int = 42
    stages: list[str] | None = None   # what `run --stage all` runs; null: every stage
    spark: SparkConfig = SparkConfig()
    tables: TablesConfig
    taxonomy: StoragePath = "conf/taxonomy.yaml"
    generator: GeneratorConfig = GeneratorConfig()
    source: SourceConfig = SourceConfig()
    ingest: IngestConfig = IngestConfig()
    labels: LabelsConfig = LabelsConfig()
    sequences: SequencesConfig = SequencesConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    segment: SegmentConfig = SegmentConfig()
    mlflow: MlflowConfig = MlflowConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

    @model_validator(mode="after")
    def _window_fits(self) -> Settings:
        if self.sequences.min_months > self.sequences.window_months:
            raise ValueError("sequences.min_months must not exceed sequences.window_months")
        return self

    def data_path(self, template: str) -> str:
        """A data location: ``{root}`` becomes the lakehouse folder, ``{project}`` this
        project's folder (both absolute); any other relative local path is taken from the
        working directory here, not from wherever Spark's JVM was started."""
        path = (template.replace("{root}", str(Path(self.tables.root).resolve()))
                .replace("{project}", str(CONF_DIR.parent)))
        return path if urlsplit(path).scheme or Path(path).is_absolute() else str(Path(path).absolute())

    def conf_path(self, path: str) -> Path:
        """A config file: relative paths are taken from the project root."""
        p = Path(path)
        return p if p.is_absolute() or p.exists() else CONF_DIR.parent / p

    def with_overrides(self, **dotted: Any) -> Settings:
        """A copy with ``{"a.b": value}`` overrides applied and validated again."""
        data = self.model_dump()
        for key, value in dotted.items():
            _set_dotted(data, key, value)
        return _validate(data, source="overrides")


def deep_merge(base: dict, top: dict) -> dict:
    """Merge ``top`` into a copy of ``base``: mappings merge, everything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(data: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key!r}: {part!r} is not a section")
    node[leaf] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.epochs=3"`` -> ``("model.epochs", 3)``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: write key.path=value, e.g. model.epochs=3")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top")
    return data


def problems(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Pydantic errors as ``key.path: message; ...``; with ``model``, an unknown key is said
    to do nothing, with the keys allowed beside it."""
    def message(e: dict) -> str:
        if model is None or e["type"] != "extra_forbidden":
            return e["msg"]
        keys = _keys_beside(model, e["loc"])
        known = f" (keys here: {', '.join(keys)})" if keys else ""
        return f"not a key here, so nothing would read it; remove it{known}"
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {message(e)}" for e in err.errors())


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models inside a type annotation (``X | None``, ``tuple[X, ...]``, ``dict[str, X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def _keys_beside(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys of the model that holds the key at ``loc``; [] when it cannot be told."""
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is not None:   # other parts are list indices, dict keys, union members
            inner = _models(field.annotation)
            if not inner:
                return []
            model = inner[0]
    return [f.alias or name for name, f in model.model_fields.items()]


def load_model_file(path: str | Path, model: type[BaseModel], what: str):
    """A YAML file validated into ``model``; any problem is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return model.model_validate(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {path} is not valid YAML: {err}") from None
    except ValidationError as err:
        raise ConfigError(f"invalid {what} {path}: {problems(err, model)}") from None


def _validate(data: dict, source: str) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid configuration ({source}): {problems(err)}") from None


def load_config(
    env: str = "local",
    files: list[str | Path] = (),
    overrides: dict[str, Any] | None = None,
    conf_dir: Path = CONF_DIR,
) -> Settings:
    """Load ``base.yaml`` + ``<env>.yaml`` + ``files``, apply ``overrides``, validate."""
    layers = [conf_dir / "base.yaml", conf_dir / f"{env}.yaml", *map(Path, files)]
    data: dict = {}
    for path in layers:
        data = deep_merge(data, _read_yaml(path))
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return _validate(data, source=" + ".join(str(p) for p in layers))
