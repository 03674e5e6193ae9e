"""Settings and their one merge (DESIGN.md §3, §6).

Precedence, lowest first: defaults < user TOML (``<user config dir>/config.toml``) < project
TOML (``./gradts.toml`` or ``--config FILE``) < environment (``GRADTS_<SECTION>_<KEY>``, or
``GRADTS_<KEY>`` for the ``[run]`` section) < command-line flags. ``None`` always means "not
given" (a flag left at ``None`` does not override a file's value; ``0`` and ``False`` do).
Unknown sections or keys, and values of the wrong type, are errors that name the file and the
key. :func:`resolve` returns every value with the place it came from, for ``gradts config``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, did_you_mean

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
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ProbeSettings:
    """Fine-tuning and importance pass (DESIGN.md §2; defaults follow the original)."""

    measure: str = "gate"         # gate | qkv | legacy
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    max_length: int = 512
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
    max_length: int = 512
    seeds: int = 1
    aux_weight: float = 1.0
    temperature: float = 1.0


@dataclass(frozen=True)
class FgSettings:
    threshold: float = 0.62
    keep_fraction: float | None = None


SECTIONS: dict[str, type] = {
    "run": RunSettings,
    "probe": ProbeSettings,
    "corr": CorrSettings,
    "trial": TrialSettings,
    "fg": FgSettings,
}


@dataclass(frozen=True)
class Config:
    run: RunSettings = field(default_factory=RunSettings)
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    corr: CorrSettings = field(default_factory=CorrSettings)
    trial: TrialSettings = field(default_factory=TrialSettings)
    fg: FgSettings = field(default_factory=FgSettings)
    sources: Mapping[str, str] = field(default_factory=dict)  # "section.key" -> origin
    files: tuple[str, ...] = ()


# Settings with a closed set of values (checked wherever the value came from), and the
# GRADTS_* environment variables that are not settings.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CHOICES: dict[str, tuple[str, ...]] = {
    "run.precision": PRECISIONS,
    "probe.measure": ("gate", "qkv", "legacy"),
    "corr.method": ("kendall", "spearman", "pearson"),
    "corr.estimator": ("during", "after"),
}
DEVICE_HELP = "auto, cpu, cuda or cuda:N"
OTHER_ENV = ("GRADTS_HOME", "GRADTS_CONFIG_DIR", "GRADTS_DEBUG")


def valid_device(name: str) -> bool:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    name = name.lower()
    return name in ("auto", "cpu", "cuda") or (
        name.startswith("cuda:") and name[5:].isdigit())


def _check_choices(values: Mapping[str, Mapping[str, Any]], sources: Mapping[str, str]) -> None:
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = values[section].get(name)
        if value is not None and value not in choices:
            where = sources.get(key, key)
            raise ConfigError(f"unknown {name} {value!r} ({where})",
                              hint=did_you_mean(str(value), choices)
                              or f"choose {name} from {', '.join(choices)}")
    device = values["run"].get("device")
    if device is not None and not valid_device(str(device)):
        raise ConfigError(f"unknown device {device!r} ({sources.get('run.device')})",
                          hint=f"use {DEVICE_HELP}")


def _check_env_names(env: Mapping[str, str]) -> None:
    """A ``GRADTS_*`` variable that names no setting is an error (a typo is not ignored)."""
    known = set(OTHER_ENV)
    for section, cls in SECTIONS.items():
        for key in _field_types(cls):
            known.add(f"GRADTS_{section.upper()}_{key.upper()}")
            if section == "run":
                known.add(f"GRADTS_{key.upper()}")
    for var in sorted(env):
        if var.startswith("GRADTS_") and var not in known:
            raise ConfigError(f"unknown environment variable {var}",
                              hint=did_you_mean(var, known)
                              or "see `gradts config` for the settings and their variables")


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


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist", hint="check --config") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from e


def _apply_file(values: dict[str, dict[str, Any]], sources: dict[str, str], path: Path) -> None:
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
            if key not in types_:
                hint = did_you_mean(key, types_)
                raise ConfigError(f"{path}: unknown key '{key}' in [{section}]",
                                  hint=hint or f"keys: {', '.join(types_)}")
            values[section][key] = _coerce(value, types_[key], f"{path}: [{section}] {key}")
            sources[f"{section}.{key}"] = str(path)


def _apply_env(values: dict[str, dict[str, Any]], sources: dict[str, str],
               env: Mapping[str, str]) -> None:
    for section, cls in SECTIONS.items():
        for key, typ in _field_types(cls).items():
            names = [f"GRADTS_{section.upper()}_{key.upper()}"]
            if section == "run":
                names.insert(0, f"GRADTS_{key.upper()}")
            for var in names:
                if var in env and env[var] != "":
                    values[section][key] = _coerce(env[var], typ, f"environment {var}")
                    sources[f"{section}.{key}"] = f"env {var}"


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
            _apply_file(values, sources, user)
            files.append(str(user))
    project = Path(config_file).expanduser() if config_file else (cwd or Path.cwd()) / "gradts.toml"
    if config_file or project.is_file():
        _apply_file(values, sources, project)
        files.append(str(project))
    _check_env_names(env)
    _apply_env(values, sources, env)
    for section, table in (flags or {}).items():
        if section not in SECTIONS:
            raise ConfigError(f"internal: unknown settings section {section!r}")
        types_ = _field_types(SECTIONS[section])
        for key, value in table.items():
            if value is None:
                continue  # not given
            if key not in types_:
                raise ConfigError(f"internal: unknown setting {section}.{key}")
            values[section][key] = _coerce(value, types_[key], f"--{key.replace('_', '-')}")
            sources[f"{section}.{key}"] = "flag"
    _check_choices(values, sources)
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
