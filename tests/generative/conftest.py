"""Fixtures of the generative kind's tests: the real SmolLM2 writer, converted once per clone, loaded once per session.

The base checkpoint lives in the repository's var/base-models (the same cache `make run` uses): the first test run
on a fresh clone converts the GGUF (~60 s on 2 busy cores); every later run loads it in under a second.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from rsft_plugin.generative.checkpoint import BaseCheckpoint, ensure_checkpoint
from rsft_plugin.generative.lora import hide_peft_wrap_notice
from rsft_plugin.generative.settings import WriterSettings
from rsft_plugin.generative.writer import Writer

REPO = Path(__file__).resolve().parents[2]
BASE_CACHE = REPO / "var" / "base-models"
# Versions saved by tests live in tmp models dirs; they find the base by hash here instead of converting again.
os.environ.setdefault("RSFT_BASE_CACHE", str(BASE_CACHE))

# Short grounding answers keep prompts near 100 tokens, so a test's forward passes take well under a second.
RETURNS = "You can return most items within 30 days of delivery, unused and in their original packaging."
EXPRESS = "Express delivery costs €9.95 and arrives in 1–2 business days."


@pytest.fixture(scope="session")
def base_checkpoint() -> BaseCheckpoint:
    return ensure_checkpoint(BASE_CACHE)


@pytest.fixture(scope="session")
def writer(base_checkpoint: BaseCheckpoint) -> Writer:
    """The untuned writer at test sizes (16 new tokens) in its own words (no copy bias: tests of the bias make their
    own). Tests never modify it: fine-tuning trains a copy."""
    return Writer.from_checkpoint(base_checkpoint, WriterSettings(max_new_tokens=16, time_limit_seconds=60.0,
                                                                  copy_bias=0.0, fit_grounding=False))


def lora_model(writer: Writer):
    """A peft LoRA model over a copy of `writer.model` whose adapter changes the logits (a fresh one is zero)."""
    from peft import LoraConfig, get_peft_model

    hide_peft_wrap_notice()  # as the product does wherever peft wraps a model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        tuned = get_peft_model(copy.deepcopy(writer.model), LoraConfig(r=8, lora_alpha=16,
                                                                       target_modules=["q_proj", "v_proj"]))
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.05)
    tuned.eval()
    return tuned


@pytest.fixture(scope="session")
def tuned_writer(writer: Writer) -> Writer:
    """The writer with a LoRA adapter that changes its logits (`lora_model`); tests never modify it."""
    return Writer(lora_model(writer), writer.tokenizer, writer.settings, writer.base)
