"""The writer: a small chat model that words a reply from the customer's question and the bank's top answers.

The prompt is the model's chat template with a system message that names the shop, states the rule (use only what
the answers say) and lists the grounding answers, then the customer's question as the user message.

Serving (`write`) decodes greedily (decoding.py: our own loop for the Llama shape, `generate` for any other model)
under a token budget and a time limit, and never raises: on a timeout, a reply cut off with no complete sentence, a
reply that states a fact its grounding does not (unless the guard is off), or any error, the caller gets the top
grounding answer itself, with the reason.

Sampling (`sample`) draws K replies at the configured temperature and top-p (decoding.py's own loop for the Llama
shape, `generate` for any other) and returns, for each, its sequence log-probability under that sampling
distribution, log q(reply | prompt) = sum_t log q(y_t | prompt, y_<t), where q(. | ...) is the writer's next-token
distribution after the copy bias, temperature and top-p, i.e. exactly the distribution the reply was drawn from (the
proposal of the statistical rejection rule). `model_logprob` is the same sum under the untempered model
(temperature 1, no top-p, no copy bias), which `reply_logprobs` recomputes for any given reply. A round samples
through `sample_many`: consecutive questions' replies decoded together, up to 8 rows a pass, each from its own seed.

Every prompt of a writer starts with the same system text (the shop's name and the rule, up to "Answers:"): `write`
and `sample` start from its keys and values, read once per model (prefix.py), when the prompt's tokens do begin
with it, and from those of the whole system turn (the rule and the grounding answers) when that turn was read for
an earlier question; teacher forcing (`token_logprobs`, used by tests and no serving or round path) reads the whole
prompt.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from .budget import reply_budget
from .cache_api import cache_of, with_cache
from .copying import copy_bias_processor, grounding_token_counts
from .replies import Reply, failed_reply, reply_of
from .samples import SampledReply, decode_passes, generate_samples, sampled_replies
from .settings import WriterSettings

if TYPE_CHECKING:
    from .checkpoint import BaseCheckpoint
    from .prefix import PrefixCache

log = logging.getLogger(__name__)

_SYSTEM = (
    "You are the customer-service assistant of {shop}. Answer the customer's question in one to three short "
    "sentences, using only what the answers below say. If they do not cover the question, say so and suggest "
    "contacting our customer care team. Never invent amounts, deadlines, links, email addresses or phone numbers."
    "\n\nAnswers:\n{answers}"
)


class Writer:
    """A causal LM (the base, or the base with LoRA adapters) plus its tokenizer and settings."""

    def __init__(self, model: Any, tokenizer: Any, settings: WriterSettings | None = None,
                 base: BaseCheckpoint | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or WriterSettings()
        self.base = base
        end = _special_id(tokenizer, "<|im_end|>")
        self.end_id: int = end if end is not None else tokenizer.eos_token_id
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id
        self.turn_start_id = _special_id(tokenizer, "<|im_start|>")  # where the chat template starts a turn
        self._prefix_ids: tuple[int, ...] | None = None  # the fixed system prefix's tokens, on first use

    @classmethod
    def from_checkpoint(cls, checkpoint: BaseCheckpoint, settings: WriterSettings | None = None) -> Writer:
        """The untuned writer over a cached base checkpoint (no adapter)."""
        from .checkpoint import load_base

        model, tokenizer = load_base(checkpoint)
        return cls(model, tokenizer, settings, checkpoint)

    def threads(self, training: bool = False) -> AbstractContextManager[None]:
        """torch and the 4-bit kernel on `settings.threads` inside the block (0: every core), for decoding or for
        `training` (cores.writer_threads)."""
        from .cores import writer_threads

        return writer_threads(self.settings.threads, self.settings.use_idle_cores, training)

    def inference_model(self) -> Any:
        """The model that writes, samples and scores: `model` with its weights laid out for decoding and any
        LoRA adapter folded in (serving.py), built on first use and shared by writers over the same model."""
        from .serving import inference_model

        return inference_model(self.model)

    def prepare(self) -> None:
        """Build the inference copy and read the system prefix's keys and values now, so that a served version's
        first reply pays for neither (~0.7 s and ~0.1 s)."""
        model = self.inference_model()
        if hasattr(model, "get_decoder"):
            from .prefix import prefix_cache

            with self.threads():
                prefix_cache(model, self.system_prefix_ids())

    # --- prompts -----------------------------------------------------------------------------------------------
    def messages(self, question: str, grounding: Sequence[str]) -> list[dict[str, str]]:
        """The chat messages for one question and its grounding answers (best first)."""
        answers = "\n".join(f"{i}. {' '.join(text.split())}" for i, text in enumerate(grounding, start=1))
        system = _SYSTEM.format(shop=self.settings.shop_name, answers=answers)
        return [{"role": "system", "content": system}, {"role": "user", "content": " ".join(question.split())}]

    def system_prefix_ids(self) -> tuple[int, ...]:
        """The tokens every prompt of this writer should start with: the chat template up to the end of the system
        message's fixed part ("... Answers:\\n"). A prompt whose tokens merge across that boundary does not start
        with them; `_system_prefix` checks each prompt."""
        if self._prefix_ids is None:
            fixed = _SYSTEM.format(shop=self.settings.shop_name, answers="")
            chat = [{"role": "system", "content": fixed + "1. x"}, {"role": "user", "content": "x"}]
            text = self.tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
            head = text[: text.index(fixed) + len(fixed)]
            self._prefix_ids = tuple(self.tokenizer(head, add_special_tokens=False)["input_ids"])
        return self._prefix_ids

    def prompt_ids(self, question: str, grounding: Sequence[str]) -> list[int]:
        """Token ids of the prompt up to the assistant's turn; drops trailing grounding answers, then cuts the
        first one, until it fits `max_prompt_tokens`."""
        if not grounding:
            raise ValueError("the writer needs at least one grounding answer")
        kept = list(grounding[: self.settings.grounding_answers])
        while True:
            ids = self._template(question, kept)
            if len(ids) <= self.settings.max_prompt_tokens:
                return ids
            if len(kept) > 1:
                kept.pop()
                continue
            excess = len(ids) - self.settings.max_prompt_tokens
            words = kept[0].split()
            if len(words) <= 8:  # the question itself is too long: keep the prompt's end
                return ids[-self.settings.max_prompt_tokens:]
            kept[0] = " ".join(words[: max(8, len(words) - max(excess, 8))])

    def example_ids(self, question: str, grounding: Sequence[str], reply: str) -> tuple[list[int], int]:
        """(prompt + reply + end-of-turn token ids, prompt length): what fine-tuning trains on."""
        prompt = self.prompt_ids(question, grounding)
        reply_ids = self.tokenizer(reply.strip(), add_special_tokens=False)["input_ids"]
        return prompt + list(reply_ids) + [self.end_id], len(prompt)

    def _template(self, question: str, grounding: Sequence[str]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(self.messages(question, grounding), add_generation_prompt=True,
                                                     tokenize=True)
        ids = encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded
        return list(ids)

    def _system_prefix(self, model: Any, prompt: Sequence[int]) -> PrefixCache | None:
        """The longest cached start of `prompt` under `model`: its system turn with the grounding answers (prefix.py),
        else the fixed system prefix, else None when `prompt` does not start with that (it is read whole, as correct
        and slower); a model without a decoder (a test's stand-in) has none."""
        if not hasattr(model, "get_decoder"):
            return None
        from .prefix import grounding_cache, grounding_head, prefix_cache

        cache = prefix_cache(model, self.system_prefix_ids())
        if cache is None or not cache.starts(prompt):
            return None
        head = grounding_head(prompt, self.turn_start_id) if self.turn_start_id is not None else ()
        return grounding_cache(model, cache, head, self.settings.cached_groundings) or cache

    # --- serving -------------------------------------------------------------------------------------------------
    def write(self, question: str, grounding: Sequence[str], max_new_tokens: int | None = None,
              time_limit: float | None = None, guard: bool | None = None) -> Reply:
        """The greedy reply to `question`, or `grounding[0]` itself when it cannot be written in time (or, with
        `guard`, default `settings.guard_faithfulness`, when it states a fact the grounding does not).

        Never raises (an empty `grounding` is the caller's bug and raises ValueError).
        """
        if not grounding:
            raise ValueError("the writer needs at least one grounding answer")
        limit = self.settings.time_limit_seconds if time_limit is None else time_limit
        started = time.monotonic()
        prompt: list[int] = []
        try:
            budget = reply_budget(self.tokenizer, self.settings, grounding, max_new_tokens)
            prompt = self.prompt_ids(question, grounding)
            new, finished = self._greedy(prompt, budget, limit, self._copy_bias(grounding, len(prompt)))
            return self._reply(grounding, len(prompt), new, finished, budget, time.monotonic() - started, guard)
        except Exception as exc:  # serving must answer: any failure of the model serves the grounding answer
            log.exception("the writer failed; serving the grounding answer")
            return failed_reply(grounding, exc, len(prompt), time.monotonic() - started)

    def write_many(self, requests: Sequence[tuple[str, Sequence[str]]], guard: bool | None = None) -> list[Reply]:
        """`write` for each (question, grounding), in order, up to `DECODE_ROWS` at a time in one greedy decode of
        one token a step (the gate's and an evaluation's replies: 8 rows in a 4-bit product cost ~2x one; the same
        tokens as `write`, whose guesses change only how many it reads a pass, to float rounding). A pass of n
        replies has n time limits, as one after another would (8 rows a step are slower than one), and each reply
        reports the pass's seconds. A lone request, or a model our own loop does not compute: `write`.
        """
        from . import decoding
        from .quantised import DECODE_ROWS

        if any(not grounding for _, grounding in requests):
            raise ValueError("the writer needs at least one grounding answer")
        try:
            together = len(requests) > 1 and decoding.supports(self.inference_model())
        except Exception:  # `write` then serves each its grounding answer and says why
            together = False
        if not together:
            return [self.write(question, grounding, guard=guard) for question, grounding in requests]
        replies: list[Reply] = []
        for batch in decode_passes([1] * len(requests), DECODE_ROWS):
            chosen = [requests[i] for i in batch]
            replies.extend(self._write_pass(chosen, guard) if len(batch) > 1 else [self.write(*chosen[0], guard=guard)])
        return replies

    def _write_pass(self, requests: Sequence[tuple[str, Sequence[str]]], guard: bool | None) -> list[Reply]:
        """One pass of `write_many`: never raises (a failure serves every request its grounding answer)."""
        import torch

        from . import decoding

        started = time.monotonic()
        prompts: list[list[int]] = []
        try:
            budgets = [reply_budget(self.tokenizer, self.settings, grounding) for _, grounding in requests]
            prompts = [self.prompt_ids(question, grounding) for question, grounding in requests]
            model = self.inference_model()
            deadline = started + self.settings.time_limit_seconds * len(requests)  # as one after another
            with self.threads(), torch.inference_mode():
                jobs = [self._decode_job(model, prompt, 1, budget, deadline, self._copy_bias(grounding, len(prompt)))
                        for prompt, budget, (_, grounding) in zip(prompts, budgets, requests, strict=True)]
                rows = [tokens[0].tolist() for tokens, _, _ in decoding.decode(model, jobs, self.end_id, self.pad_id)]
            seconds = time.monotonic() - started
            return [self._reply(grounding, len(prompt), *_until_end(row, self.end_id), budget, seconds, guard)
                    for row, prompt, budget, (_, grounding) in zip(rows, prompts, budgets, requests, strict=True)]
        except Exception as exc:  # as `write`: every reply falls back to its grounding answer
            log.exception("the writer failed; serving the grounding answers")
            return [failed_reply(grounding, exc, len(prompts[i]) if prompts else 0, time.monotonic() - started)
                    for i, (_, grounding) in enumerate(requests)]

    def _reply(self, grounding: Sequence[str], prompt_tokens: int, new: list[int], finished: bool, budget: int,
               seconds: float, guard: bool | None) -> Reply:
        """What a decode of `new` tokens serves (replies.reply_of), with this writer's tokenizer and guard."""
        guarded = self.settings.guard_faithfulness if guard is None else guard
        return reply_of(self.tokenizer.decode(new, skip_special_tokens=True).strip(), grounding, finished,
                        len(new) >= budget, guarded, self.settings.grounding_answers, prompt_tokens, len(new), seconds)

    def _greedy(self, prompt: list[int], budget: int, limit: float, bias: Any = None) -> tuple[list[int], bool]:
        """The greedy reply's tokens and whether it ended: by our own decode loop (decoding.py), or by `generate`
        for a model that loop does not compute."""
        import torch

        from . import decoding

        deadline = time.monotonic() + limit
        model = self.inference_model()
        with self.threads(), torch.inference_mode():
            cache = _shared_prefix_cache(model, prompt, 1, self._system_prefix(model, prompt))
            if decoding.supports(model):
                return decoding.greedy(model, prompt, cache, budget, deadline, self.end_id, bias,
                                       self.settings.draft_tokens)
            ids = torch.tensor([prompt])  # (1, P)
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **with_cache(cache),
                                 max_new_tokens=budget, do_sample=False, max_time=limit, eos_token_id=self.end_id,
                                 pad_token_id=self.pad_id, logits_processor=bias)
        return _until_end(out[0, len(prompt):].tolist(), self.end_id)

    def grounding_token_counts(self, grounding: Sequence[str]) -> dict[int, int]:
        """How often each token occurs in the grounding answers the writer sees (copying.py)."""
        return grounding_token_counts(self.tokenizer, grounding[: self.settings.grounding_answers])

    def _copy_bias(self, grounding: Sequence[str], prompt_length: int) -> Any:
        """The logits processors of one reply: the copy bias on the grounding's tokens not yet used up by the reply
        (the tokens from `prompt_length` on), or None when it is off."""
        if not self.settings.copy_bias:
            return None
        from transformers import LogitsProcessorList

        return LogitsProcessorList([copy_bias_processor(self.grounding_token_counts(grounding),
                                                        self.settings.copy_bias, prompt_length)])

    # --- sampling ------------------------------------------------------------------------------------------------
    def sample(self, question: str, grounding: Sequence[str], k: int, temperature: float | None = None,
               top_p: float | None = None, seed: int = 0, max_new_tokens: int | None = None,
               time_limit: float | None = None) -> list[SampledReply]:
        """k replies drawn i.i.d. from q (copy bias, temperature, then top-p: nucleus.py), each with log q and the
        untempered log p. Reproducible for a given seed; the global torch RNG is left as it was."""
        return self.sample_many([(question, grounding, k, seed)], temperature, top_p, max_new_tokens, time_limit)[0]

    def sample_many(self, requests: Sequence[tuple[str, Sequence[str], int, int]], temperature: float | None = None,
                    top_p: float | None = None, max_new_tokens: int | None = None,
                    time_limit: float | None = None) -> list[list[SampledReply]]:
        """`sample` for each (question, grounding, k, seed), in order. Our own loop decodes consecutive requests
        together, up to `DECODE_ROWS` rows a pass (a round's 4 replies to 2 questions: 8 rows in a 4-bit product
        cost ~1.3x what 4 do); each draws from its own seed, so its replies are those it gets alone (to float
        rounding of the products' sums). `time_limit` bounds each pass."""
        import torch

        from . import decoding
        from .quantised import DECODE_ROWS

        model = self.inference_model()
        own_loop = decoding.supports(model)
        replies: list[list[SampledReply]] = []
        with self.threads(), torch.inference_mode():
            for batch in decode_passes([request[2] for request in requests], DECODE_ROWS if own_loop else 1):
                deadline = math.inf if time_limit is None else time.monotonic() + time_limit
                jobs = [self._sample_job(model, own_loop, *requests[i], temperature, top_p, max_new_tokens, deadline)
                        for i in batch]
                drawn = (decoding.decode(model, jobs, self.end_id, self.pad_id) if own_loop else [
                    generate_samples(model, job, _shared_prefix_cache(model, list(job.prompt), job.rows,
                                                                      self._system_prefix(model, job.prompt)),
                                     self.end_id, self.pad_id) for job in jobs])
                replies.extend(sampled_replies(self.tokenizer, self.end_id, *tensors) for tensors in drawn)
        return replies

    def _sample_job(self, model: Any, own_loop: bool, question: str, grounding: Sequence[str], k: int, seed: int,
                    temperature: float | None, top_p: float | None, max_new_tokens: int | None,
                    deadline: float) -> Any:
        """One request to sample, as a decoding.DecodeJob: its processors (copy bias, temperature, top-p) and a
        generator seeded with `seed`."""
        import torch

        from .nucleus import sampling_processors

        prompt = self.prompt_ids(question, grounding)
        processors = sampling_processors(temperature or self.settings.temperature, top_p or self.settings.top_p,
                                         self._copy_bias(grounding, len(prompt)))
        return self._decode_job(model, prompt, k, reply_budget(self.tokenizer, self.settings, grounding,
                                                                max_new_tokens),
                                deadline, processors, torch.Generator().manual_seed(seed), read_prefix=own_loop)

    def _decode_job(self, model: Any, prompt: list[int], rows: int, budget: int, deadline: float, processors: Any,
                    generator: Any = None, read_prefix: bool = True) -> Any:
        """A decoding.DecodeJob for `prompt` from its system prefix's keys and values (with `read_prefix`; the
        `generate` path reads its own); no `generator`: greedy."""
        from .decoding import DecodeJob

        cache = _shared_prefix_cache(model, prompt, 1, self._system_prefix(model, prompt)) if read_prefix else None
        return DecodeJob(prompt, cache, rows, budget, deadline, processors, generator)

    def reply_logprobs(self, question: str, grounding: Sequence[str], replies: Sequence[str]) -> list[float]:
        """log p(reply + end-of-turn | prompt) under the untempered writer, by teacher forcing."""
        prompt = self.prompt_ids(question, grounding)
        return self.token_logprobs(prompt, [self.example_ids(question, grounding, r)[0][len(prompt):] for r in replies])

    def token_logprobs(self, prompt: list[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """log p(continuation | prompt) under the untempered writer for each token sequence, by teacher forcing."""
        import torch

        from .batches import pad_batch, prompt_mask

        rows = [(list(prompt) + list(tokens), len(prompt)) for tokens in continuations]
        batch, labels = pad_batch(rows, self.pad_id)  # (B, L) each
        model = self.inference_model()
        with self.threads(), torch.inference_mode():
            logits = model(input_ids=batch, attention_mask=(labels != -100) | prompt_mask(rows, batch)).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, L-1, V)
        targets = labels[:, 1:]  # (B, L-1)
        picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, L-1)
        return [float(v) for v in (picked * (targets != -100)).sum(dim=1)]


def _shared_prefix_cache(model: Any, prompt: list[int], rows: int, system: PrefixCache | None = None) -> Any:
    """The key/value cache generate() starts from for `rows` copies of `prompt`: a fresh copy of the system prefix's
    (`system`, which starts the prompt, or nothing) and, for several rows, the rest of the prompt but its last token
    read once and repeated per row; None when nothing is cached (no system prefix, and one row or one token)."""
    import torch

    cache = system.fresh() if system is not None else None
    if rows < 2 or len(prompt) < 2:
        return cache
    start = len(system.ids) if system is not None else 0
    if start < len(prompt) - 1:
        # the decoder alone: the prompt's logits are not needed
        cache = cache_of(model.get_decoder()(input_ids=torch.tensor([prompt[start:-1]]), **with_cache(cache),
                                             use_cache=True))
    cache.batch_repeat_interleave(rows)
    return cache


def _special_id(tokenizer: Any, token: str) -> int | None:
    """The id of a special token of the chat template, or None when the tokenizer does not have it."""
    found = tokenizer.convert_tokens_to_ids(token)
    return found if isinstance(found, int) and found != tokenizer.unk_token_id else None


def _until_end(tokens: list[int], end_id: int) -> tuple[list[int], bool]:
    """A decoded row's tokens before its end-of-turn token, and whether it had one (later tokens are padding)."""
    return (tokens[: tokens.index(end_id)], True) if end_id in tokens else (tokens, False)
