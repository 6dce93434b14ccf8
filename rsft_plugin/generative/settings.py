"""Settings of the writer and its LoRA fine-tune: defined once in `rsft_plugin/config/generative.py` (the
`generative:` section of rsft.yml, torch-free) and re-exported here for the generative kind's modules."""

from __future__ import annotations

from ..config.generative import GenerativeConfig, LoraTraining, WriterSettings

__all__ = ["GenerativeConfig", "LoraTraining", "WriterSettings"]
