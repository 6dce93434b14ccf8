"""LoRA fine-tuning of the real writer at test sizes (3 pairs, one epoch), and a saved writer's round trip."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from rsft_plugin.errors import ModelLoadError
from rsft_plugin.generative.lora import WRITER_FILE, WriterExample, finetune_writer, load_writer, save_writer
from rsft_plugin.generative.settings import LoraTraining, WriterSettings

from .conftest import BASE_CACHE, EXPRESS, RETURNS

pytestmark = pytest.mark.writer

EXAMPLES = [
    WriterExample("Can I return it after 3 weeks?", (RETURNS,), "Yes, within 30 days of delivery."),
    WriterExample("How much is express?", (EXPRESS,), "Express costs €9.95."),
    WriterExample("Can I send back shoes I wore?", (RETURNS,), "Only unused items can be returned."),
]
TRAINING = LoraTraining(learning_rate=5e-3, batch_size=2, max_epochs=1, val_fraction=0.34, seed=7)


@pytest.fixture(scope="module")
def trained(writer):
    """One epoch on 3 pairs (2 train, 1 validation): ~5-15 s on 2 busy cores."""
    before = {n: p.detach().clone() for n, p in writer.model.named_parameters()}
    result = finetune_writer(writer, EXAMPLES, TRAINING, show_bar=False)
    return result, before


def test_finetune_trains_every_adapter_weight_of_a_copy(writer, trained) -> None:
    result, before = trained
    assert (result.train_pairs, result.val_pairs, result.epochs_run, result.best_epoch) == (2, 1, 1, 1)
    assert result.steps == 1 and result.tokens_per_second > 0 and result.seconds > 0
    assert result.trainable_parameters == 30 * 8 * ((576 + 576) + (576 + 192))  # r 8 on q_proj and v_proj: 0.46 M
    lora = {n: p for n, p in result.writer.model.named_parameters() if "lora_" in n}
    assert lora and sum(p.numel() for p in lora.values()) == result.trainable_parameters
    # lora_B starts at zero and lora_A at random: after a step with a large learning rate every matrix moved
    assert all(p.abs().sum() > 0 for n, p in lora.items() if "lora_B" in n)
    # the live writer is untouched: same weights, still no adapter
    assert not hasattr(writer.model, "peft_config")
    assert all(torch.equal(before[n], p) for n, p in writer.model.named_parameters())
    # the copy shares the frozen base weights with the live writer instead of duplicating them
    assert result.writer.model.get_base_model().model.embed_tokens.weight is writer.model.model.embed_tokens.weight
    # also after bfloat16 training (precision.py): the frozen linear weights are the live writer's float32 ones
    layer, live_layer = result.writer.model.get_base_model().model.layers[3], writer.model.model.layers[3]
    assert layer.self_attn.o_proj.weight is live_layer.self_attn.o_proj.weight


def test_training_raises_the_likelihood_of_the_training_replies(writer, trained) -> None:
    result, _ = trained
    example = EXAMPLES[0]
    before = writer.reply_logprobs(example.question, example.grounding, [example.reply])[0]
    after = result.writer.reply_logprobs(example.question, example.grounding, [example.reply])[0]
    assert after > before
    assert result.history[0]["train_loss"] > 0 and result.history[0]["val_loss"] == result.best_val_loss


def test_a_saved_writer_references_its_base_and_reloads(tmp_path, writer, trained) -> None:
    result, _ = trained
    record = save_writer(result.writer, tmp_path / "v")
    assert record["base_sha256"] == writer.base.sha256 and record["adapter"] is True
    files = {p.name: p.stat().st_size for p in (tmp_path / "v").iterdir()}
    assert set(files) == {WRITER_FILE, "adapter_config.json", "adapter_model.safetensors"}
    assert sum(files.values()) < 5_000_000, "the base is referenced by hash, never copied"
    loaded = load_writer(tmp_path / "v", BASE_CACHE)
    assert loaded.settings == result.writer.settings and loaded.base == writer.base
    example = EXAMPLES[1]
    assert loaded.reply_logprobs(example.question, example.grounding, [example.reply]) == pytest.approx(
        result.writer.reply_logprobs(example.question, example.grounding, [example.reply]), abs=1e-4)
    # settings from rsft.yml override the saved ones; the adapter stays
    faster = load_writer(tmp_path / "v", BASE_CACHE, WriterSettings(time_limit_seconds=1.0))
    assert faster.settings.time_limit_seconds == 1.0 and hasattr(faster.model, "peft_config")


def test_wrapping_for_training_and_loading_an_adapter_leave_the_log_free_of_peft_notices(
        tmp_path, writer, trained) -> None:
    from rsft_plugin.generative.lora import _trainable_copy

    save_writer(trained[0].writer, tmp_path / "v")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what a test or `python -W always` sets: the product's filter must still hold
        _trainable_copy(writer, seed=3)  # peft wraps the live writer's model for a round's LoRA
        load_writer(tmp_path / "v", BASE_CACHE)  # and the saved adapter of a served version
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []


def test_the_untuned_writer_saves_without_an_adapter(tmp_path, writer) -> None:
    record = save_writer(writer, tmp_path / "v0")
    assert record["adapter"] is False
    assert {p.name for p in (tmp_path / "v0").iterdir()} == {WRITER_FILE}
    assert not hasattr(load_writer(tmp_path / "v0", BASE_CACHE).model, "peft_config")


def test_a_damaged_writer_folder_is_a_model_load_error(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="missing or unreadable"):
        load_writer(tmp_path, BASE_CACHE)
    (tmp_path / WRITER_FILE).write_text(json.dumps({"settings": {"nope": 1}, "base_sha256": "x"}))
    with pytest.raises(ModelLoadError):
        load_writer(tmp_path, BASE_CACHE)


def test_the_same_seed_gives_the_same_adapter_initialisation(writer) -> None:
    from rsft_plugin.generative.lora import _trainable_copy

    a, b = _trainable_copy(writer, seed=1), _trainable_copy(writer, seed=1)
    pa = {n: p for n, p in a.model.named_parameters() if "lora_A" in n}
    pb = {n: p for n, p in b.model.named_parameters() if "lora_A" in n}
    assert pa and all(torch.equal(pa[n], pb[n]) for n in pa)


def test_no_pairs_is_refused(writer) -> None:
    with pytest.raises(ValueError, match="at least one"):
        finetune_writer(writer, [], TRAINING, show_bar=False)


def _full_sequence_loss(model, rows) -> torch.Tensor:
    """The reference: every reply read together with its whole prompt, cross-entropy over all reply tokens."""
    causal_lm = model.get_base_model()
    losses = []
    for ids, prompt_len in rows:
        logits = causal_lm(input_ids=torch.tensor([ids])).logits[0, prompt_len - 1: -1]  # predicting the reply
        losses.append(torch.nn.functional.cross_entropy(logits.float(), torch.tensor(ids[prompt_len:]),
                                                        reduction="sum"))
    return torch.stack(losses).sum() / sum(len(ids) - prompt_len for ids, prompt_len in rows)


def test_replies_to_one_prompt_read_it_once_with_the_same_loss_and_gradients(writer) -> None:
    """Training reads a prompt once per batch and continues each reply from its keys and values: the loss and every
    adapter gradient must equal reading each reply with its whole prompt (a wrong position, mask or cache breaks it).
    """
    from rsft_plugin.generative.lora import _batch_loss, _batches, _by_prompt, _trainable_copy

    copy = _trainable_copy(writer, seed=3)
    model = copy.model
    model.eval()  # no dropout: both ways must see the same function
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; move it so that the adapter changes the prompt's keys and values
            torch.nn.init.normal_(param, std=0.02)
    replies = ["Yes, within 30 days of delivery.", "Only if unused.", "Yes: 30 days, in the original packaging."]
    rows = [copy.example_ids("Can I return it after 3 weeks?", (RETURNS,), r) for r in replies]
    rows.append(copy.example_ids("How much is express?", (EXPRESS,), "It costs €9.95."))
    groups = _by_prompt(rows)
    assert sorted(len(g) for g in groups) == [1, 3]
    batches = _batches(groups, 8, __import__("numpy").random.default_rng(0))
    assert len(batches) == 1 and sum(len(piece) for piece in batches[0]) == 4

    def gradients(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    grouped_loss, tokens = _batch_loss(model, batches[0], copy.pad_id)
    assert tokens == sum(len(ids) for ids, _ in rows)
    grouped = gradients(grouped_loss)
    reference_loss = _full_sequence_loss(model, rows)
    reference = gradients(reference_loss)
    assert grouped_loss.item() == pytest.approx(reference_loss.item(), rel=1e-4)
    for name, grad in reference.items():
        assert torch.allclose(grouped[name], grad, rtol=1e-3, atol=1e-6), name


def test_a_batch_reads_the_start_its_prompts_share_once(writer) -> None:
    """Every prompt starts with the writer's system text: a batch reads it as one row, then each prompt's rest."""
    from rsft_plugin.generative.lora import _batch_loss, _trainable_copy

    copy = _trainable_copy(writer, seed=3)
    returns = copy.example_ids("Can I return it after 3 weeks?", (RETURNS,), "Yes, within 30 days.")
    express = copy.example_ids("How much is express?", (EXPRESS,), "It costs €9.95.")
    read = []
    decoder = copy.model.get_base_model().model
    handle = decoder.register_forward_pre_hook(
        lambda module, args, kwargs: read.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        with torch.no_grad():
            _batch_loss(copy.model, [[returns], [express]], copy.pad_id)
    finally:
        handle.remove()
    shared = next(at for at, (a, b) in enumerate(zip(returns[0], express[0], strict=False)) if a != b)
    assert shared >= len(copy.system_prefix_ids())
    rest = max(returns[1], express[1]) - 1 - shared  # each prompt but its last token, after the shared start
    assert read == [(1, shared), (2, rest), (2, max(len(returns[0]) - returns[1], len(express[0]) - express[1]) + 1)]


def test_batches_hold_whole_prompts_and_every_reply_once_per_epoch() -> None:
    import numpy as np

    from rsft_plugin.generative.lora import _batches, _by_prompt

    rows = [([1, 2, 3, 10 + i], 3) for i in range(5)] + [([4, 5, 20 + i], 2) for i in range(2)] + [([6, 7, 30], 2)]
    groups = _by_prompt(rows)
    assert [len(g) for g in groups] == [5, 2, 1]
    for seed in range(5):
        batches = _batches(groups, 4, np.random.default_rng(seed))
        flat = [row for batch in batches for piece in batch for row in piece]
        assert sorted(map(str, flat)) == sorted(map(str, rows)), "every reply exactly once"
        assert all(sum(len(piece) for piece in batch) <= 4 for batch in batches)
        assert all(len({tuple(ids[:n]) for ids, n in piece}) == 1 for batch in batches for piece in batch)


def test_auto_precision_is_bfloat16_exactly_where_the_cpu_multiplies_it_natively() -> None:
    from pathlib import Path

    from rsft_plugin.generative.precision import training_precision

    cpuinfo = Path("/proc/cpuinfo")  # the machines this runs on are Linux
    flags = {flag for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
             for flag in line.split(":", 1)[1].split()}
    native = bool({"avx512_bf16", "amx_tile"} & flags)
    assert training_precision("auto") == ("bfloat16" if native else "float32")
    assert (training_precision("float32"), training_precision("bfloat16")) == ("float32", "bfloat16")


def test_a_bfloat16_step_computes_the_float32_loss_and_gradients_to_bfloat16_rounding(writer) -> None:
    """bfloat16 training (autocast, bfloat16 frozen weights, float32 attention) must really run in bfloat16 (the
    loss is not bit-equal) and still learn the same thing: loss within 3 %, every adapter gradient pointing the same
    way (cosine > 0.99). bfloat16 keeps 8 bits of mantissa: over 25 random adapter starts here the loss moved by up
    to 0.9 % (1.1 % once on the CI machine, whose CPU takes another path), the worst gradient cosine was 0.9956."""
    from rsft_plugin.generative.lora import _batch_loss, _batches, _by_prompt, _trainable_copy
    from rsft_plugin.generative.precision import FLOAT32_ATTENTION, training_arithmetic

    copy = _trainable_copy(writer, seed=3)
    model = copy.model
    model.eval()
    torch.manual_seed(0)  # the same adapter start on every run: the differences measured are the arithmetic's
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.02)
    rows = [copy.example_ids(e.question, e.grounding, e.reply) for e in EXAMPLES]
    batch = _batches(_by_prompt(rows), 8, __import__("numpy").random.default_rng(0))[0]

    def step(precision):
        model.zero_grad(set_to_none=True)
        with training_arithmetic(model, precision):
            inside = model.get_base_model()
            assert inside.model.layers[0].mlp.down_proj.weight.dtype == getattr(torch, precision)
            assert (inside.config._attn_implementation == FLOAT32_ATTENTION) == (precision == "bfloat16")
            loss, _ = _batch_loss(model, batch, copy.pad_id, precision)
            loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    loss32, grads32 = step("float32")
    loss16, grads16 = step("bfloat16")
    # on the way out the copy is float32 again, on the live writer's own frozen tensors, with its own attention
    down = model.get_base_model().model.layers[0].mlp.down_proj
    assert down.weight is writer.model.model.layers[0].mlp.down_proj.weight
    assert model.get_base_model().config._attn_implementation == writer.model.config._attn_implementation
    assert step("float32")[0] == loss32
    assert all(g.dtype == torch.float32 for g in grads16.values())  # the adapter itself stays float32
    assert loss16 != loss32
    assert loss16 == pytest.approx(loss32, rel=3e-2)
    for name, grad in grads32.items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), grads16[name].flatten(), dim=0)
        assert cosine > 0.99, (name, float(cosine))


def test_the_fine_tune_reports_the_precision_it_ran_in(writer) -> None:
    from dataclasses import replace

    from rsft_plugin.generative.precision import training_precision

    result = finetune_writer(writer, EXAMPLES[:2], replace(TRAINING, val_fraction=0, precision="float32"),
                             show_bar=False)
    assert result.precision == "float32"
    assert TRAINING.precision == "auto"
    assert finetune_writer(writer, EXAMPLES[:2], replace(TRAINING, val_fraction=0), show_bar=False
                           ).precision == training_precision("auto")
