"""Versions appear only when complete; the live pointer flips atomically; a watcher swaps without dropping."""

from __future__ import annotations

import json
import threading

import pytest

from rsft_plugin.errors import ModelLoadError, RegistryError
from rsft_plugin.models.live import LiveModel
from rsft_plugin.models.registry import Registry

from .conftest import relabelled


def test_publish_numbers_versions_and_does_not_make_them_live(tmp_path, pretrained):
    registry = Registry(tmp_path / "models")
    first = registry.publish(pretrained, notes="a")
    second = registry.publish(pretrained, parent=first.name, round_id=1)
    assert [i.name for i in registry.versions()] == ["v0001", "v0002"]
    assert second.parent == "v0001" and second.round_id == 1
    assert registry.live_name() is None
    with pytest.raises(RegistryError, match="rsft init-model"):
        registry.live_path()


def test_set_live_replaces_the_pointer_and_logs_every_change(tmp_path, pretrained):
    registry = Registry(tmp_path / "models")
    for _ in range(2):
        registry.publish(pretrained)
    assert registry.set_live("v0001", "init") is None
    assert registry.set_live("v0002", "round 1") == "v0001"
    assert (tmp_path / "models" / "LIVE").read_text() == "v0002\n"
    assert registry.previous_live() == "v0001"
    assert [(e["from"], e["to"], e["reason"]) for e in registry.pointer_history()] == [
        (None, "v0001", "init"), ("v0001", "v0002", "round 1")]
    assert not list((tmp_path / "models").glob(".LIVE*")), "temporary pointer file left behind"


@pytest.mark.parametrize("name", ["v0009", "../v0001", "latest", ""])
def test_set_live_refuses_what_is_not_a_complete_version(tmp_path, pretrained, name):
    registry = Registry(tmp_path / "models")
    registry.publish(pretrained)
    registry.set_live("v0001", "init")
    with pytest.raises(RegistryError):
        registry.set_live(name, "bad")
    assert registry.live_name() == "v0001"


def test_a_half_written_version_is_never_listed_and_is_swept(tmp_path, pretrained):
    registry = Registry(tmp_path / "models")
    registry.publish(pretrained)
    staging = tmp_path / "models" / ".staging-v0002-999"
    staging.mkdir()
    (staging / "weights.pt").write_bytes(b"partial")
    unfinished = tmp_path / "models" / "v0003"  # a directory without version.json
    unfinished.mkdir()
    assert [i.name for i in registry.versions()] == ["v0001"]
    with pytest.raises(RegistryError):
        registry.set_live("v0003", "bad")
    registry.publish(pretrained)
    assert not staging.exists()


def test_live_model_swaps_only_to_a_loadable_version(tmp_path, pretrained, bank):
    registry = Registry(tmp_path / "models")
    registry.publish(pretrained)
    registry.set_live("v0001", "init")
    registry.publish(relabelled(pretrained, "[v2]"))
    live = LiveModel(registry, pretrained.config)
    in_flight = live.current  # a request that started before the swap keeps this model
    assert live.refresh() is False
    registry.set_live("v0002", "test")
    assert live.refresh() is True
    assert live.current.name == "v0002" and live.current.bank.answers[0].text.startswith("[v2]")
    assert in_flight.name == "v0001" and in_flight.answer("refund please").answer.id  # still answers

    weights = tmp_path / "models" / "v0002" / "weights.pt"
    registry.publish(pretrained)
    (tmp_path / "models" / "v0003" / "weights.pt").write_bytes(weights.read_bytes()[:100])  # corrupt it
    registry.set_live("v0003", "corrupt")
    assert live.refresh() is False
    assert live.current.name == "v0002"


def test_live_model_refuses_to_start_without_a_live_version(tmp_path, pretrained):
    with pytest.raises(ModelLoadError, match="cannot start without a live model"):
        LiveModel(Registry(tmp_path / "models"), pretrained.config)


def test_watcher_thread_swaps_in_the_background(tmp_path, pretrained):
    registry = Registry(tmp_path / "models")
    registry.publish(pretrained)
    registry.publish(relabelled(pretrained, "[v2]"))
    registry.set_live("v0001", "init")
    live = LiveModel(registry, pretrained.config)
    swapped = threading.Event()
    original_refresh = live.refresh

    def refresh_and_signal() -> bool:
        changed = original_refresh()
        if changed:
            swapped.set()
        return changed

    live.refresh = refresh_and_signal
    live.start_watching(0.05)
    try:
        registry.set_live("v0002", "test")
        assert swapped.wait(60), "the watcher did not pick up the new pointer"
        assert live.current.name == "v0002"
    finally:
        live.stop_watching()


def test_version_json_describes_the_version(tmp_path, pretrained):
    registry = Registry(tmp_path / "models")
    info = registry.publish(pretrained, eval_numbers={"heldout_accuracy": 0.5}, notes="n")
    described = json.loads((tmp_path / "models" / "v0001" / "version.json").read_text())
    assert described["name"] == info.name == "v0001"
    assert described["eval"] == {"heldout_accuracy": 0.5}
    assert len(described["weights_sha256"]) == 64 and described["trainable_layers"] == 2
