from __future__ import annotations

import math
from pathlib import Path

import pytest

from rsft_plugin.config import load_config, merge_overrides, parse_overrides
from rsft_plugin.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rsft.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RSFT_CONFIG", raising=False)
    config = load_config()
    assert config.model.temperature == 0.05
    assert config.paths.db == (tmp_path / "var" / "rsft.db").resolve()
    assert config.source is None


def test_yaml_overrides_defaults_and_paths_resolve_against_the_file(tmp_path):
    config = load_config(_write(tmp_path, "model:\n  temperature: 0.1\npaths:\n  db: state/log.db\n"))
    assert config.model.temperature == 0.1
    assert config.paths.db == tmp_path / "state" / "log.db"
    assert config.model.top_k == 4  # untouched keys keep their defaults


def test_cli_overrides_win_over_yaml_and_none_means_not_given(tmp_path):
    path = _write(tmp_path, "model:\n  temperature: 0.1\n  top_k: 4\n")
    config = load_config(path, overrides={"model": {"temperature": 0.2, "top_k": None}})
    assert (config.model.temperature, config.model.top_k) == (0.2, 4)


@pytest.mark.parametrize("text, message", [
    ("modle:\n  top_k: 3\n", "unknown section(s) ['modle']; valid sections are"),
    ("model:\n  topk: 3\n", "model: unknown key(s) ['topk']; valid keys are"),
    ("model:\n  top_k: three\n", "model.top_k: expected int, got 'three'"),
    ("model:\n  top_k: true\n", "model.top_k: expected int"),
    ("model:\n  temperature: -1\n", "model.temperature: must be > 0"),
    ("model:\n  temperature: .nan\n", "not a finite number"),
    ("model:\n  min_score: 1.5\n", "model.min_score: must be in [-1, 1)"),
    ("model:\n  memory_centroid: 1\n", "model.memory_centroid: must be in [0, 1)"),
    ("model:\n  memory_centroid_prior: -1\n", "model.memory_centroid_prior: must be in [0, 1000]"),
    ("feedback:\n  resolved_cosine: 0\n", "feedback.resolved_cosine: must be in (0, 1]"),
    ("feedback:\n  resolved_weight: -1\n", "feedback.resolved_weight: must be in [0, 10]"),
    ("server:\n  rasa_port: 70000\n", "is not a TCP port"),
    ("model: [1, 2]\n", "section model must be a mapping"),
    ("- a\n- b\n", "the top level must be a mapping"),
    ("model: {top_k: [\n", "not valid YAML"),
    ("paths:\n  db: ''\n", "paths.db: expected Path"),
    ("score:\n  max_rated_turns: -1\n", "score.max_rated_turns: must be >= 0"),
    ("score:\n  max_signals: 2.5\n", "score.max_signals: expected int"),
])
def test_bad_values_are_clear_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        load_config(_write(tmp_path, text))
    assert message in str(raised.value)


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yml")


def test_ints_are_accepted_for_floats(tmp_path):
    config = load_config(_write(tmp_path, "model:\n  temperature: 1\n"))
    assert isinstance(config.model.temperature, float) and math.isclose(config.model.temperature, 1.0)


def test_the_repository_config_loads():
    config = load_config(Path(__file__).resolve().parent.parent / "rsft.yml")
    assert config.paths.answers.exists() and config.paths.golden.exists()


def test_the_repository_config_states_the_defaults():
    """rsft.yml documents every default; if a default changes, the file must change with it."""
    from rsft_plugin.config import Config

    repo = load_config(Path(__file__).resolve().parent.parent / "rsft.yml")
    defaults = Config()
    for section in defaults.section_names():
        if section != "paths":
            assert getattr(repo, section) == getattr(defaults, section), section


def test_set_assignments_parse_as_yaml_scalars_and_refuse_other_shapes():
    assert parse_overrides(["reject.beta=0.5", "reject.rule=best_of_n", "sample.with_replacement=true"]) == {
        "reject": {"beta": 0.5, "rule": "best_of_n"}, "sample": {"with_replacement": True}}
    for bad in ("reject.beta", "beta=0.5", ".beta=1", "reject.=1", "reject.beta=[1, 2]", "reject.beta={a: 1}"):
        with pytest.raises(ConfigError):
            parse_overrides([bad])


def test_later_override_layers_win_and_none_means_not_given():
    merged = merge_overrides({"sample": {"k": 4, "seed": 1}}, {"sample": {"k": None, "seed": 2}, "reject": {}})
    assert merged == {"sample": {"k": 4, "seed": 2}, "reject": {}}
