"""The `generative:` section of rsft.yml (config/generative.py): loaded, validated, linked to the model config, and
which settings a saved writer keeps. Torch-free, like the section itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsft_plugin.config import Config, GenerativeConfig, WriterSettings, load_config, settings_as_yaml
from rsft_plugin.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rsft.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_section_loads_and_is_what_the_model_config_serves_with(tmp_path):
    config = load_config(_write(tmp_path, "model:\n  kind: generative\ngenerative:\n  max_new_tokens: 16\n"
                                          "  time_limit_seconds: 2\n  shop_name: Acme\n  lora_targets: [q_proj]\n"
                                          "  lora_learning_rate: 0.001\n"))
    assert config.model.kind == "generative" and config.model.generative is config.generative
    section = config.generative
    assert (section.max_new_tokens, section.time_limit_seconds, section.shop_name) == (16, 2.0, "Acme")
    assert isinstance(section.time_limit_seconds, float) and section.lora_targets == ("q_proj",)
    writer = section.writer_settings()
    assert type(writer) is WriterSettings and writer.max_new_tokens == 16 and writer.lora_targets == ("q_proj",)
    assert section.lora_training().learning_rate == 0.001 and section.lora_training().batch_size == 8
    assert WriterSettings.from_json(writer.to_json()) == writer  # what writer.json stores round-trips


def test_overrides_reach_the_section(tmp_path):
    config = load_config(_write(tmp_path, ""), {"generative": {"time_limit_seconds": 0.5, "threads": 2}})
    assert config.generative.time_limit_seconds == 0.5 and config.model.generative.threads == 2


def test_a_round_runs_the_writer_with_its_own_threads_and_serving_keeps_the_serving_ones(tmp_path):
    config = load_config(_write(tmp_path, "generative:\n  threads: 1\n  round_threads: 0\n"))
    rounds = config.generative.for_rounds()
    assert rounds.threads == 0 and rounds.round_threads == 0 and rounds.shop_name == config.generative.shop_name
    assert config.generative.threads == 1 and config.model.generative.threads == 1  # serving: unchanged
    assert GenerativeConfig().round_threads == 1  # the default leaves a 2-core machine's other core to serving
    assert config.generative.use_idle_cores and not rounds.use_idle_cores  # a round never takes the idle cores


@pytest.mark.parametrize("text, message", [
    ("generative:\n  max_tokens: 8\n", "generative: unknown key(s) ['max_tokens']; valid keys are ["),
    ("generative:\n  max_new_tokens: 0\n", "generative.max_new_tokens: must be between 1 and 512"),
    ("generative:\n  time_limit_seconds: 0\n", "generative.time_limit_seconds: must be > 0"),
    ("generative:\n  grounding_answers: 9\n", "generative.grounding_answers: must be between 1 and 5"),
    ("generative:\n  top_p: 1.5\n", "generative.top_p: must be in (0, 1]"),
    ("generative:\n  temperature: hot\n", "generative.temperature: expected float, got 'hot'"),
    ("generative:\n  guard_faithfulness: 1\n", "generative.guard_faithfulness: expected bool"),
    ("generative:\n  guard_topic: 'no'\n", "generative.guard_topic: expected bool"),
    ("generative:\n  copy_bias: -1\n", "generative.copy_bias: must be between 0 and 20"),
    ("generative:\n  shop_name: '  '\n", "generative.shop_name: must not be empty"),
    ("generative:\n  lora_targets: q_proj\n", "generative.lora_targets: expected a non-empty list of names"),
    ("generative:\n  lora_targets: []\n", "generative.lora_targets: expected a non-empty list of names"),
    ("generative:\n  lora_batch_size: 0\n", "generative.lora_batch_size: must be >= 1"),
    ("generative:\n  lora_learning_rate: 2\n", "generative.lora_learning_rate: must be in (0, 1)"),
    ("generative:\n  round_threads: -1\n", "generative.round_threads: must be between 0 and 256"),
    ("generative:\n  lora_precision: float16\n", "generative.lora_precision: must be one of auto, float32, bfloat16"),
    ("generative: 3\n", "section generative must be a mapping"),
    ("model:\n  generative: {}\n", "model: unknown key(s) ['generative']"),  # the section is top-level only
])
def test_bad_values_are_refused_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert message in str(caught.value)


def test_the_unknown_key_error_names_every_valid_key(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, "generative:\n  max_tokens: 8\n"))
    for key in ("max_new_tokens", "time_limit_seconds", "lora_targets", "lora_max_epochs", "shop_name"):
        assert key in str(caught.value)


def test_rsft_config_prints_the_section_once_and_every_key_has_help():
    printed = yaml.safe_load(settings_as_yaml(Config()))
    assert printed["generative"]["lora_targets"] == ["q_proj", "v_proj"] and "generative" not in printed["model"]
    import dataclasses

    for setting in dataclasses.fields(GenerativeConfig):
        assert setting.metadata.get("help"), setting.name
    documented = yaml.safe_load((REPO / "rsft.yml").read_text(encoding="utf-8"))["generative"]
    assert set(documented) == set(printed["generative"])  # rsft.yml lists every key (and its default, test_config)


def test_a_saved_writer_keeps_its_lora_structure_and_takes_everything_else_from_the_config():
    saved = WriterSettings(lora_r=4, lora_alpha=8, lora_dropout=0.1, lora_targets=("q_proj",), shop_name="Old",
                           time_limit_seconds=30.0, max_new_tokens=96)
    configured = GenerativeConfig(shop_name="New", time_limit_seconds=2.0, max_new_tokens=24, temperature=0.5)
    serving = configured.writer_settings().keeping_weights_of(saved)
    assert (serving.lora_r, serving.lora_alpha, serving.lora_dropout, serving.lora_targets) == (4, 8, 0.1, ("q_proj",))
    assert (serving.shop_name, serving.time_limit_seconds, serving.max_new_tokens, serving.temperature) == (
        "New", 2.0, 24, 0.5)
    assert type(serving) is WriterSettings


def test_the_config_package_loads_no_torch():
    code = "import sys, rsft_plugin.config, rsft_plugin.generative.settings; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.stdout.strip() == "False"
