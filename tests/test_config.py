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


@pytest.mark.parametrize("env,match,hint", [
    ({"GRADTS_RUN_PRECISION": "banana"}, r"unknown precision 'banana' \(env GRADTS_RUN_PRECISION\)",
     "auto, fp32, bf16, fp16"),
    ({"GRADTS_PRECISION": "fp8"}, r"unknown precision 'fp8' \(env GRADTS_PRECISION\)", "fp16"),
    ({"GRADTS_DEVICE": "gpu"}, r"unknown device 'gpu'", "cuda:N"),
    ({"GRADTS_DEVICE": "cuda:x"}, r"unknown device 'cuda:x'", "cuda:N"),
    ({"GRADTS_PROBE_MEASURE": "gates"}, r"unknown importance measure 'gates'", "gate"),
    ({"GRADTS_CORR_ESTIMATOR": "before"}, r"unknown estimator 'before'", "during"),
    ({"GRADTS_CORR_METHOD": "kendal"}, r"unknown correlation method 'kendal'", "kendall"),
    ({"GRADTS_PROBE_EPOCH": "1"}, r"unknown environment variable GRADTS_PROBE_EPOCH",
     "GRADTS_PROBE_EPOCHS"),
    ({"GRADTS_HOEM": "/x"}, r"unknown environment variable GRADTS_HOEM", "GRADTS_HOME"),
    ({"GRADTS_PROBE_MAX_LENGTH": "64"}, r"GRADTS_PROBE_MAX_LENGTH", "GRADTS_MAX_LENGTH"),
    ({"GRADTS_SEED": "-1"}, r"GRADTS_SEED must be at least 0, not -1", None),
    ({"GRADTS_SEED": str(2**70)}, r"GRADTS_SEED must be at most", None),
    ({"GRADTS_PROBE_LR": "nan"}, r"GRADTS_PROBE_LR must be a finite number", None),
    ({"GRADTS_PROBE_EPOCHS": "0"}, r"GRADTS_PROBE_EPOCHS must be at least 1, not 0", None),
])
def test_env_values_and_names_are_validated(tmp_path: Path, env: dict, match: str,
                                            hint: str | None) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        resolve(None, env=env, cwd=tmp_path)
    if hint:
        assert hint in (e.value.hint or "")


def test_closed_sets_are_canonical_and_checked_in_files_and_flags(tmp_path: Path) -> None:
    cfg = resolve({"run": {"precision": "BF16", "device": "CUDA:1"}}, env={}, cwd=tmp_path)
    assert (cfg.run.precision, cfg.run.device) == ("bf16", "cuda:1")
    with pytest.raises(ConfigError, match=r"unknown precision 'junk' \(--precision\)"):
        resolve({"run": {"precision": "junk"}}, env={}, cwd=tmp_path)
    (tmp_path / "gradts.toml").write_text('[run]\nprecision = "fp8"\n')
    with pytest.raises(ConfigError,
                       match=r"unknown precision 'fp8' \(.*gradts.toml: \[run\] precision\)"):
        resolve(None, env={}, cwd=tmp_path)


def test_documented_non_setting_variables_are_not_errors(tmp_path: Path) -> None:
    from gradts_engine.config import NON_SETTING_ENV

    env = {name: "1" for name in NON_SETTING_ENV}
    env.update({"GRADTS_MODEL": "m", "_GRADTS_COMPLETE": "complete_bash"})
    assert resolve(None, env=env, cwd=tmp_path).run.model == "m"


def test_trust_remote_code_only_from_the_flag_or_the_user_file(tmp_path: Path) -> None:
    (tmp_path / "gradts.toml").write_text("[run]\ntrust_remote_code = true\n")
    with pytest.raises(ConfigError, match=r"gradts.toml \(a project file\): trust_remote_code "
                                          "cannot be switched on") as e:
        resolve(None, env={}, cwd=tmp_path)
    assert "--trust-remote-code" in (e.value.hint or "")
    other = tmp_path / "other.toml"
    other.write_text("[run]\ntrust_remote_code = true\n")
    with pytest.raises(ConfigError, match="cannot be switched on"):
        resolve(None, str(other), env={}, cwd=tmp_path)
    (tmp_path / "gradts.toml").write_text("[run]\ntrust_remote_code = false\n")
    for var in ("GRADTS_TRUST_REMOTE_CODE", "GRADTS_RUN_TRUST_REMOTE_CODE"):
        with pytest.raises(ConfigError, match=f"environment {var}: trust_remote_code cannot"):
            resolve(None, env={var: "1"}, cwd=tmp_path)
    assert resolve(None, env={}, cwd=tmp_path).run.trust_remote_code is False
    _user_file("[run]\ntrust_remote_code = true\n")
    assert resolve(None, env={}, cwd=tmp_path).run.trust_remote_code is False  # project: false
    (tmp_path / "gradts.toml").unlink()
    assert resolve(None, env={}, cwd=tmp_path).run.trust_remote_code is True
    cfg = resolve({"run": {"trust_remote_code": True}}, env={}, cwd=tmp_path / "nowhere")
    assert cfg.run.trust_remote_code is True and cfg.sources["run.trust_remote_code"] == "flag"


def test_one_max_length_for_every_stage(tmp_path: Path) -> None:
    cfg = resolve(None, env={}, cwd=tmp_path)
    assert cfg.run.max_length is None and cfg.probe.max_length is None  # the model's limit
    assert cfg.trial.max_length is None
    (tmp_path / "gradts.toml").write_text("[run]\nmax_length = 128\n")
    cfg = resolve({"trial": {"max_length": 64}}, env={}, cwd=tmp_path)
    assert cfg.run.max_length == 128 and cfg.probe.max_length == 128
    assert cfg.sources["probe.max_length"] == str(tmp_path / "gradts.toml")
    assert cfg.trial.max_length == 64 and cfg.sources["trial.max_length"] == "flag"
    assert resolve(None, env={"GRADTS_MAX_LENGTH": "96"}, cwd=tmp_path).trial.max_length == 96
    (tmp_path / "gradts.toml").write_text("[probe]\nmax_length = 128\n")
    with pytest.raises(ConfigError, match=r"\[probe\] max_length is set once for every stage, "
                                          r"in \[run\] max_length") as e:
        resolve(None, env={}, cwd=tmp_path)
    assert "[run]" in (e.value.hint or "")


def test_config_file_not_utf8_or_a_directory(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_bytes(b"[probe]\nepochs = 3 # \xff\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        resolve(None, str(f), env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="is a directory"):
        resolve(None, str(tmp_path), env={}, cwd=tmp_path)
