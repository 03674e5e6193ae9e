"""Config merge: defaults < user < project < env < flags; None = not given; errors name file+key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gradts_engine.config import explain, resolve
from gradts_engine.errors import ConfigError


def _user_file(text: str) -> Path:
    d = Path(os.environ["GRADTS_CONFIG_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.toml").write_text(text)
    return d / "config.toml"


def test_precedence_and_sources(tmp_path: Path) -> None:
    user = _user_file("[probe]\nepochs = 5\nlr = 1e-4\nbatch_size = 8\n[run]\nseed = 1\n")
    project = tmp_path / "gradts.toml"
    project.write_text("[probe]\nepochs = 4\nlr = 2e-4\n")
    env = {"GRADTS_PROBE_LR": "3e-4", "GRADTS_SEED": "7"}
    cfg = resolve({"probe": {"lr": 4e-4, "epochs": None, "max_length": 64}}, None, env=env,
                  cwd=tmp_path)
    assert cfg.probe.batch_size == 8 and cfg.sources["probe.batch_size"] == str(user)
    assert cfg.probe.epochs == 4 and cfg.sources["probe.epochs"] == str(project)
    assert cfg.probe.lr == 4e-4 and cfg.sources["probe.lr"] == "flag"
    assert cfg.run.seed == 7 and cfg.sources["run.seed"] == "env GRADTS_SEED"
    assert cfg.probe.max_length == 64
    assert cfg.corr.method == "kendall"
    rows = {k: (v, s) for k, v, s in explain(cfg)}
    assert rows["corr.method"] == ("kendall", "default")
    assert rows["probe.lr"] == (4e-4, "flag")


def test_none_means_not_given_but_zero_and_false_override(tmp_path: Path) -> None:
    (tmp_path / "gradts.toml").write_text("[trial]\npatience = 3\n[probe]\ninstances = true\n")
    cfg = resolve({"trial": {"patience": 0}, "probe": {"instances": False}}, env={}, cwd=tmp_path)
    assert cfg.trial.patience == 0
    assert cfg.probe.instances is False
    cfg = resolve({"trial": {"patience": None}}, env={}, cwd=tmp_path)
    assert cfg.trial.patience == 3


def test_explicit_config_file_replaces_project_file(tmp_path: Path) -> None:
    (tmp_path / "gradts.toml").write_text("[probe]\nepochs = 4\n")
    other = tmp_path / "other.toml"
    other.write_text("[probe]\nepochs = 9\n")
    assert resolve(None, str(other), env={}, cwd=tmp_path).probe.epochs == 9


@pytest.mark.parametrize("text,match", [
    ("[probe]\nepoch = 3\n", r"unknown key 'epoch' in \[probe\].*epochs"),
    ("[prob]\nepochs = 3\n", r"unknown section \[prob\].*probe"),
    ("[probe]\nepochs = 'three'\n", r"\[probe\] epochs must be int"),
    ("[probe]\nepochs = \n", r"not valid TOML.*line 2"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "gradts.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match) as e:
        resolve(None, None, env={}, cwd=tmp_path)
    assert str(f) in e.value.message


def test_bad_env_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="GRADTS_PROBE_EPOCHS"):
        resolve(None, env={"GRADTS_PROBE_EPOCHS": "x"}, cwd=tmp_path)


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve(None, str(tmp_path / "nope.toml"), env={}, cwd=tmp_path)
