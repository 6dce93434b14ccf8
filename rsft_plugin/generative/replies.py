"""What serving makes of a greedy decode: the written reply, or the top grounding answer with the reason it was not
served (timed out, cut with no complete sentence, empty, unfaithful, an error)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .faithfulness import is_faithful

_SENTENCE_END = (".", "!", "?")


@dataclass(frozen=True)
class Reply:
    """What serving shows the customer: the written reply, or the grounding answer when writing failed."""

    text: str
    fallback: bool  # True: `text` is the top grounding answer, not a written reply
    reason: str  # why it fell back ("timeout", "truncated", "empty", "unfaithful", "error: ..."); "" when written
    prompt_tokens: int
    new_tokens: int
    seconds: float
    written: str = ""  # what the writer would serve, also when it was not served (cut back to its last sentence
    # end when the budget cut it; the whole decode when none is left, or on a timeout); "" after an error


def reply_of(decoded: str, grounding: Sequence[str], finished: bool, cut: bool, guard: bool, grounding_answers: int,
             prompt_tokens: int, new_tokens: int, seconds: float) -> Reply:
    """The reply for `decoded` (the decode's text): `finished` at the end-of-turn token, else `cut` by the token
    budget (served up to its last sentence end) or stopped by the time limit; with `guard`, a reply stating a fact
    its first `grounding_answers` answers do not is not served."""
    text = written = decoded
    reason = ""
    if not finished and not cut:
        reason = "timeout"
    elif not finished:
        text = _last_sentence_end(text)
        reason = "" if text else "truncated"
        written = text or written  # what would be served, when the cut leaves a sentence
    elif not text:
        reason = "empty"
    if not reason and guard and not is_faithful(text, grounding[:grounding_answers]):
        reason = "unfaithful"
    if reason:
        return Reply(grounding[0], True, reason, prompt_tokens, new_tokens, seconds, written)
    return Reply(text, False, "", prompt_tokens, new_tokens, seconds, written)


def failed_reply(grounding: Sequence[str], error: Exception, prompt_tokens: int, seconds: float) -> Reply:
    """The top grounding answer, served because the writer raised `error`."""
    return Reply(grounding[0], True, f"error: {type(error).__name__}: {error}", prompt_tokens, 0, seconds)


def _last_sentence_end(text: str) -> str:
    """The text up to its last sentence end, or "" when it has none."""
    cut = max(text.rfind(mark) for mark in _SENTENCE_END)
    return text[: cut + 1].strip() if cut >= 0 else ""
