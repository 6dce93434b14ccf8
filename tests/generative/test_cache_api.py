"""Every forward and `generate` call of the writer hands over and reads its key/value cache under the name the
installed transformers takes (`cache_api`): the writer's log stays free of the `past_key_values` deprecation that
5.25 prints per call site, and the code keeps working when 5.40 drops the old name."""

from __future__ import annotations

import warnings

import pytest
import torch

from rsft_plugin.generative import decoding
from rsft_plugin.generative.cache_api import cache_name, with_cache

from .conftest import EXPRESS, RETURNS

pytestmark = pytest.mark.writer


def _deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "past_key_values" in str(w.message)]


def test_the_cache_name_is_the_one_the_llama_forward_takes() -> None:
    import inspect

    from transformers.models.llama.modeling_llama import LlamaModel

    assert cache_name() in inspect.signature(LlamaModel.forward).parameters
    assert with_cache(None) == {cache_name(): None}


def test_writing_sampling_and_training_pass_the_cache_without_the_deprecated_name(writer) -> None:
    from rsft_plugin.generative.lora import _batch_loss, _trainable_copy

    copy = _trainable_copy(writer, seed=3)
    rows = [[copy.example_ids("Can I return it after 3 weeks?", (RETURNS,), "Yes, within 30 days.")],
            [copy.example_ids("How much is express?", (EXPRESS,), "It costs €9.95.")]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        writer.write("Can I return it after 3 weeks?", [RETURNS], max_new_tokens=4, guard=False)  # own loop
        writer.sample_many([("How fast is express?", [EXPRESS], 2, 0)], max_new_tokens=4)
        with pytest.MonkeyPatch.context() as patch:  # transformers' generate, for models the own loop does not run
            patch.setattr(decoding, "supports", lambda model: False)
            writer.write("Can I return it after 3 weeks?", [RETURNS], max_new_tokens=4, guard=False)
            writer.sample("How fast is express?", [EXPRESS], 2, max_new_tokens=4)
        with torch.no_grad():
            _batch_loss(copy.model, rows, copy.pad_id)  # the shared prompt start, then each reply from its cache
    assert _deprecations(caught) == []

