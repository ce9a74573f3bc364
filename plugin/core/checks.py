"""The options of a run, checked once, before any work.

Every public call turns what the user passed into small config objects here
(:class:`FeatureSpec`, :class:`~fiftyone_csl.plugin.train.TrainConfig`) or
raises :class:`CSLError`. Defaults live in the engine's signatures and in
these classes, nowhere else: operators pass only what the user set.
"""

import math
import numbers
from dataclasses import dataclass, fields

from ...models import HEADS, build_head
from .errors import CSLError
from .train import TrainConfig

# names FiftyOne gives to every video sample or frame, or keeps for itself
RESERVED_NAMES = frozenset(
    {"id", "_id", "filepath", "tags", "metadata", "media_type", "created_at", "last_modified_at", "frames",
     "frame_number", "sample_id", "_sample_id", "_frame_id", "_dataset_id", "_media_type", "_rand", "group"}
)  # fmt: skip
DEVICE_TYPES = ("auto", "cpu", "cuda", "mps")
# the precision of the flags that ``threshold="auto"`` aims at when the simulation estimates it
TARGET_PRECISION = 0.85


@dataclass(frozen=True)
class ScoringOptions:
    """How a replay's frames are scored and flagged (the defaults of every
    scoring call): ``threshold`` ("auto" or a CSL value), extra
    ``peer_scores``, the replay's arithmetic ``precision``, and the
    ``simulation`` with the ``target_precision`` it aims the threshold at."""

    threshold: object = "auto"
    peer_scores: tuple = ()
    precision: str = "auto"
    simulation: bool = False
    target_precision: float = TARGET_PRECISION


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int (bools and non-integral numbers refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise CSLError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise CSLError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_float(name: str, value, minimum: float | None = None, positive: bool = False, allow_inf=False) -> float:
    """``value`` as a finite float (bools refused), ``>= minimum`` or ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CSLError(f"{name} must be a number; got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise CSLError(f"{name} must be finite; got {value!r}")
    if positive and not value > 0:
        raise CSLError(f"{name} must be > 0; got {value}")
    if minimum is not None and value < minimum:
        raise CSLError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise CSLError(f"{name} must be True or False; got {value!r}")
    return value


def check_threshold(value):
    """``"auto"``/None or a finite number >= 0 (CSL is a cross-entropy)."""
    if value is None or value == "auto":
        return "auto"
    return check_float("threshold", value, minimum=0.0)


def check_device(device) -> str:
    """``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``."""
    if device is None:
        return "auto"
    text = str(device)
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise CSLError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {device!r}")
    return text


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise CSLError(f"unknown {name} {value!r}; choose one of {sorted(choices)}")
    return value


def check_identifier(name: str, value) -> str:
    """A new field name or run key: an identifier, not private, not reserved."""
    if not isinstance(value, str) or not value.isidentifier():
        raise CSLError(f"{name} must be a valid identifier (letters, digits, _); got {value!r}")
    if value.startswith("_") or value in RESERVED_NAMES:
        raise CSLError(f"{name} {value!r} is a name FiftyOne reserves; choose another")
    return value


def check_no_unknown(function: str, kwargs: dict, known) -> None:
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise CSLError(f"{function}() got unknown argument(s) {unknown}; known: {sorted(known)}")


def make_train_config(function: str, **kwargs):
    """A checked :class:`~fiftyone_csl.plugin.train.TrainConfig` from keyword
    arguments; unknown names, wrong types and ranges raise :class:`CSLError`."""

    known = {f.name for f in fields(TrainConfig)}
    check_no_unknown(function, kwargs, known)
    c = TrainConfig(**kwargs)
    check_choice("model", c.model, HEADS)
    values = dict(
        model=c.model,
        epochs=check_int("epochs", c.epochs, 1),
        folds=check_int("folds", c.folds, 1),
        cross_fit=check_bool("cross_fit", c.cross_fit),
        lr=check_float("lr", c.lr, positive=True),
        weight_decay=check_float("weight_decay", c.weight_decay, minimum=0.0),
        batch_size=check_int("batch_size", c.batch_size, 1),
        max_frames=check_int("max_frames", c.max_frames, 2),
        seed=check_int("seed", c.seed, 0),
        model_kwargs=c.model_kwargs,
        half_checkpoints=check_bool("half_checkpoints", c.half_checkpoints),
        mgw_sigma=check_float("mgw_sigma", c.mgw_sigma, minimum=0.0, allow_inf=True),
        rounds=c.rounds,
    )
    if isinstance(c.rounds, bool) or c.rounds not in (1, 2, "auto"):
        raise CSLError(f"rounds must be 1, 2 or 'auto'; got {c.rounds!r}")
    if values["cross_fit"] and values["folds"] < 2:
        raise CSLError("cross-fitting needs folds >= 2 (or cross_fit=False)")
    if not isinstance(c.model_kwargs, dict):
        raise CSLError(f"model_kwargs must be a dict; got {c.model_kwargs!r}")
    config = TrainConfig(**values)
    try:  # a head that cannot be built fails here, not after the features
        build_head(config.model, 8, 2, **config.model_kwargs)
    except (TypeError, ValueError) as e:
        raise CSLError(f"model_kwargs {config.model_kwargs} do not fit model '{config.model}': {e}") from None
    return config


def check_simulation(simulation, target_precision) -> None:
    if not isinstance(simulation, bool):
        raise CSLError(f"simulation must be True or False; got {simulation!r}")
    if isinstance(target_precision, bool) or not isinstance(target_precision, (int, float)):
        raise CSLError(f"target_precision must be a number in (0, 1); got {target_precision!r}")
    if not 0 < float(target_precision) < 1:
        raise CSLError(f"target_precision must be in (0, 1); got {target_precision!r}")
