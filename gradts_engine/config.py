"""Settings and their one merge (DESIGN.md §3, §6).

Precedence, lowest first: defaults < user TOML (``<user config dir>/config.toml``) < project
TOML (``./gradts.toml`` or ``--config FILE``) < environment (``GRADTS_<SECTION>_<KEY>``, or
``GRADTS_<KEY>`` for the ``[run]`` section) < command-line flags. ``None`` always means "not
given" (a flag left at ``None`` does not override a file's value; ``0`` and ``False`` do).
Unknown sections or keys, unknown ``GRADTS_*`` variables (other than those in
:data:`NON_SETTING_ENV`), values of the wrong type, outside their range, or outside their closed
set (device, precision, measure, estimator, method) are errors that name the file, variable or
flag and the key. :func:`resolve` returns every value with the place it came from, for
``gradts config``.

Two rules of their own:

* ``trust_remote_code`` runs code from a model directory, so only the command-line flag or the
  user's own config file may switch it on; a project file (which arrives with a cloned folder)
  or the environment may not.
* One max length for every stage: ``[run] max_length`` (default: the model's own limit, capped
  at 512; see :func:`gradts_engine.models.resolve_max_length`). ``probe.max_length`` and
  ``trial.max_length`` are that value unless the command's ``--max-length`` flag sets it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, did_you_mean
from .models import parse_device, parse_precision
from .signal import FG_THRESHOLD, Estimator, Measure, Method, parse_choice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class RunSettings:
    """Settings shared by every command that computes."""

    model: str | None = None
    revision: str | None = None
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    precision: str = "auto"       # auto | fp32 | bf16 | fp16
    seed: int = 2018
    trust_remote_code: bool = False   # only the flag or the user config file may set it
    max_length: int | None = None  # None: the model's own limit, capped at 512 (every stage)


@dataclass(frozen=True)
class ProbeSettings:
    """Fine-tuning and importance pass (DESIGN.md §2; defaults follow the original)."""

    measure: str = "gate"         # gate | qkv | legacy
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int | None = None   # = [run] max_length unless --max-length is given
    max_train_examples: int | None = None
    warmup: float = 0.1
    weight_decay: float = 0.01
    instances: bool = True


@dataclass(frozen=True)
class CorrSettings:
    method: str = "kendall"       # kendall | spearman | pearson
    estimator: str = "during"     # during | after
    bootstrap: int = 0


@dataclass(frozen=True)
class TrialSettings:
    epochs: int = 7
    patience: int = 1
    max_aux: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int | None = None   # = [run] max_length unless --max-length is given
    seeds: int = 1
    aux_weight: float = 1.0
    temperature: float = 1.0


@dataclass(frozen=True)
class FgSettings:
    threshold: float = FG_THRESHOLD
    keep_fraction: float | None = None


SECTIONS: dict[str, type] = {
    "run": RunSettings,
    "probe": ProbeSettings,
    "corr": CorrSettings,
    "trial": TrialSettings,
    "fg": FgSettings,
}


# Environment variables that are not settings (everything else named GRADTS_* must be one).
NON_SETTING_ENV: dict[str, str] = {
    "GRADTS_HOME": "the store root (as --home)",
    "GRADTS_CONFIG_DIR": "the user config directory (config.toml, tasks/)",
    "GRADTS_DEBUG": "1 shows tracebacks",
    "GRADTS_DIST_TIMEOUT": "seconds a rank waits for the others (distributed runs)",
    "GRADTS_DIST_ERRORS": "where ranks record a failure for the --nproc launcher (internal)",
}
# Settings that only a command-line flag or the user config file may switch on (security).
FLAG_OR_USER_ONLY = ("run.trust_remote_code",)
# Keys that exist for the command's own flag only; files and the environment use [run].
FLAG_ONLY = {"probe.max_length": "run.max_length", "trial.max_length": "run.max_length"}


@dataclass(frozen=True)
class Config:
    run: RunSettings = field(default_factory=RunSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    corr: CorrSettings = field(default_factory=CorrSettings)
    trial: TrialSettings = field(default_factory=TrialSettings)
    fg: FgSettings = field(default_factory=FgSettings)
    sources: Mapping[str, str] = field(default_factory=dict)  # "section.key" -> origin
    files: tuple[str, ...] = ()


def user_config_file() -> Path:
    from .tasks.registry import user_config_dir

    return user_config_dir() / "config.toml"


def _field_types(cls: type) -> dict[str, Any]:
    import typing

    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check/convert one value to the field's type (ints accepted for floats)."""
    import types
    import typing

    args = typing.get_args(typ)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), typ) if args else typ
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} may not be empty")
    if isinstance(typ, types.UnionType) or optional:
        typ = base
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false",
                                                         "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str and isinstance(value, str):
        return value
    name = getattr(typ, "__name__", str(typ))
    raise ConfigError(f"{where} must be {name}, not {value!r}")


def _signal_choice(cls: Any, what: str, flag: str) -> Callable[[Any, str | None], str]:
    def check(value: Any, where: str | None) -> str:
        return str(parse_choice(cls, value, what, flag))
    return check


# Closed sets: "section.key" -> (value, where) -> the canonical value, or a ConfigError.
CHOICES: dict[str, Callable[[Any, str | None], str]] = {
    "run.device": lambda v, where: parse_device(v, where),
    "run.precision": lambda v, where: parse_precision(v, where),
    "probe.measure": _signal_choice(Measure, "importance measure", "--measure"),
    "corr.estimator": _signal_choice(Estimator, "estimator", "--estimator"),
    "corr.method": _signal_choice(Method, "correlation method", "--method"),
}
# Numeric ranges: "section.key" -> (lowest, highest), None = unbounded; floats must be finite.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "run.seed": (0, 2**32 - 1), "run.max_length": (8, None),
    "probe.epochs": (1, None), "probe.batch_size": (1, None), "probe.lr": (0, None),
    "probe.max_length": (8, None), "probe.max_train_examples": (1, None),
    "probe.warmup": (0, 0.999999), "probe.weight_decay": (0, None),
    "corr.bootstrap": (0, None),
    "trial.epochs": (1, None), "trial.patience": (0, None), "trial.max_aux": (0, None),
    "trial.batch_size": (1, None), "trial.lr": (0, None), "trial.max_length": (8, None),
    "trial.seeds": (1, None), "trial.aux_weight": (0, None), "trial.temperature": (1e-9, None),
    "fg.threshold": (-1, 1), "fg.keep_fraction": (1e-9, 1),
}


def _check_value(name: str, value: Any, where: str) -> Any:
    """A coerced value checked against its closed set or range (``name`` = "section.key")."""
    if value is None:
        return None
    if name in CHOICES:
        try:
            return CHOICES[name](value, None)
        except ConfigError as e:  # "unknown precision 'fp8' (env GRADTS_PRECISION)"
            shown = where.replace("environment ", "env ", 1)
            raise ConfigError(f"{e.message} ({shown})", hint=e.hint) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, not {value}")
    low, high = RANGES.get(name, (None, None))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if low is not None and value < low:
            raise ConfigError(f"{where} must be at least {low:g}, not {value}")
        if high is not None and value > high:
            raise ConfigError(f"{where} must be at most {high:g}, not {value}")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist", hint="check --config") from e
    except IsADirectoryError as e:
        raise ConfigError(f"config file {path} is a directory", hint="name a .toml file") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start})",
                          hint="save it as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from e


def _refuse_remote_code(name: str, value: Any, where: str) -> None:
    if name in FLAG_OR_USER_ONLY and value:
        raise ConfigError(
            f"{where}: {name.split('.')[1]} cannot be switched on here: it runs code from the "
            "model directory, so only you may allow it",
            hint=f"pass --trust-remote-code, or set it in your user config {user_config_file()}")


def _apply_file(values: dict[str, dict[str, Any]], sources: dict[str, str], path: Path,
                user: bool = False) -> None:
    doc = _read_toml(path)
    for section, table in doc.items():
        if section not in SECTIONS:
            hint = did_you_mean(section, SECTIONS)
            raise ConfigError(f"{path}: unknown section [{section}]",
                              hint=hint or f"sections: {', '.join(SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: '{section}' must be a table [{section}]")
        types_ = _field_types(SECTIONS[section])
        for key, value in table.items():
            name = f"{section}.{key}"
            if name in FLAG_ONLY:
                raise ConfigError(f"{path}: [{section}] {key} is set once for every stage, in "
                                  f"[run] {key}", hint=f"move it to [run]: {key} = {value!r}")
            if key not in types_:
                hint = did_you_mean(key, types_)
                raise ConfigError(f"{path}: unknown key '{key}' in [{section}]",
                                  hint=hint or f"keys: {', '.join(types_)}")
            where = f"{path}: [{section}] {key}"
            coerced = _check_value(name, _coerce(value, types_[key], where), where)
            if not user:
                _refuse_remote_code(name, coerced, f"{path} (a project file)")
            values[section][key] = coerced
            sources[name] = str(path)


def env_names() -> dict[str, str]:
    """Every ``GRADTS_*`` variable that is a setting -> its ``section.key``."""
    out: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for key in _field_types(cls):
            if f"{section}.{key}" in FLAG_ONLY:
                continue
            out[f"GRADTS_{section.upper()}_{key.upper()}"] = f"{section}.{key}"
            if section == "run":
                out[f"GRADTS_{key.upper()}"] = f"{section}.{key}"
    return out


def _apply_env(values: dict[str, dict[str, Any]], sources: dict[str, str],
               env: Mapping[str, str]) -> None:
    known = env_names()
    for var in sorted(v for v in env if v.startswith("GRADTS_")):
        if var in known or var in NON_SETTING_ENV:
            continue
        hint = did_you_mean(var, [*known, *NON_SETTING_ENV])
        flag_only = {f"GRADTS_{k.replace('.', '_').upper()}" for k in FLAG_ONLY}
        raise ConfigError(f"unknown environment variable {var}",
                          hint=("set GRADTS_MAX_LENGTH (every stage reads [run] max_length)"
                                if var in flag_only else
                                (hint + " " if hint else "") + "settings are "
                                f"GRADTS_<SECTION>_<KEY> (e.g. GRADTS_PROBE_EPOCHS); unset {var}"
                                " otherwise"))
    for var, name in known.items():  # GRADTS_<KEY> before GRADTS_RUN_<KEY>: the later wins
        if var in env and env[var] != "":
            section, key = name.split(".")
            typ = _field_types(SECTIONS[section])[key]
            where = f"environment {var}"
            value = _check_value(name, _coerce(env[var], typ, where), where)
            _refuse_remote_code(name, value, where)
            values[section][key] = value
            sources[name] = f"env {var}"


def _apply_flags(values: dict[str, dict[str, Any]], sources: dict[str, str],
                 flags: Mapping[str, Mapping[str, Any]]) -> None:
    for section, table in flags.items():
        if section not in SECTIONS:
            raise ConfigError(f"internal: unknown settings section {section!r}")
        types_ = _field_types(SECTIONS[section])
        for key, value in table.items():
            if value is None:
                continue  # not given
            if key not in types_:
                raise ConfigError(f"internal: unknown setting {section}.{key}")
            where = f"--{key.replace('_', '-')}"
            values[section][key] = _check_value(f"{section}.{key}",
                                                _coerce(value, types_[key], where), where)
            sources[f"{section}.{key}"] = "flag"


def resolve(flags: Mapping[str, Mapping[str, Any]] | None = None, config_file: str | None = None,
            *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
            use_user: bool = True) -> Config:
    """Merge defaults < user file < project file < environment < flags (see module doc)."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    sources: dict[str, str] = {}
    files: list[str] = []
    if use_user:
        user = user_config_file()
        if user.is_file():
            _apply_file(values, sources, user, user=True)
            files.append(str(user))
    project = Path(config_file).expanduser() if config_file else (cwd or Path.cwd()) / "gradts.toml"
    if config_file or project.is_file():
        _apply_file(values, sources, project)
        files.append(str(project))
    _apply_env(values, sources, env)
    _apply_flags(values, sources, flags or {})
    for name, shared in FLAG_ONLY.items():  # a stage's max length: its flag, else [run]'s
        section, key = name.split(".")
        if key not in values[section] and shared in sources:
            values[section][key] = values["run"][key]
            sources[name] = sources[shared]
    built = {s: SECTIONS[s](**values[s]) for s in SECTIONS}
    return Config(**built, sources=sources, files=tuple(files))


def explain(cfg: Config) -> list[tuple[str, Any, str]]:
    """Every setting as (``section.key``, value, origin) rows, origin ``default`` if unset."""
    rows = []
    for section in SECTIONS:
        obj = getattr(cfg, section)
        for f in dataclasses.fields(obj):
            k = f"{section}.{f.name}"
            rows.append((k, getattr(obj, f.name), cfg.sources.get(k, "default")))
    return rows
