"""Faithfulness of a written reply to the answers it was grounded in: a pure function, no model.

A reply is *unfaithful* when it states a checkable fact that none of its grounding answers states: an amount of
money (or a percentage), a duration (a number of minutes, hours, days, weeks, months or years), a URL, an email
address or a phone number. Facts are compared after normalisation, so "€4.95" matches "4.95 EUR", "2 weeks"
matches "14 days", "3–5 business days" grounds both 3 and 5 days, and "+44 20 7946 0958" matches
"020 7946 0958" (the same trailing digits). Slot placeholders such as "{amount}" or "{email}" are not facts: they
are filled from the customer's message when the reply is rendered.

The check is deliberately one-sided: it never asks whether the reply is helpful, only whether it invents a
number, an address or a link. A round rejects an unfaithful reply whatever its reward.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("amount", "duration", "url", "email", "phone")

_SLOT = re.compile(r"\{\w+\}")
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fourteen": 14, "fifteen": 15, "twenty": 20,
    "twenty-one": 21, "thirty": 30, "forty-five": 45, "sixty": 60, "ninety": 90, "hundred": 100,
}
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?"
_WORD_NUM = "|".join(sorted((re.escape(w) for w in _NUMBER_WORDS if w not in ("a", "an")), key=len, reverse=True))
_RANGE_SEP = r"\s*(?:-|–|—|to|or|and)\s*"
# Units normalised to a base: minutes and hours stay, weeks become days, years become months.
_UNITS = {"minute": ("minutes", 1), "hour": ("hours", 1), "day": ("days", 1), "week": ("days", 7),
          "month": ("months", 1), "year": ("months", 12)}
_DURATION = re.compile(
    rf"\b(?P<first>{_NUM}|{_WORD_NUM}|an?)(?:{_RANGE_SEP}(?P<second>{_NUM}|{_WORD_NUM}))?"
    r"[\s-]*(?:(?:business|working|calendar|full)\s+)?(?P<unit>minute|hour|day|week|month|year)s?\b",
    re.IGNORECASE,
)
_CURRENCY = r"[€$£]|EUR|USD|GBP|euros?|dollars?|pounds?"
_AMOUNT = re.compile(
    rf"(?:(?:[€$£]|\b(?:EUR|USD|GBP))\s?(?P<pre>{_NUM}))|(?:\b(?P<post>{_NUM})\s?(?:{_CURRENCY})(?![a-z]))"
    rf"|(?:\b(?P<pct>{_NUM})\s?(?:%|per\s?cent\b|percent\b))",
    re.IGNORECASE,
)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|shop|co\.uk|de|eu|"
                  r"example)(?:/[^\s<>\"')\]]*)?", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w.#])\+?\(?\d[\d\s().-]{5,}\d(?![\w])")
_PHONE_TAIL = 7  # phone numbers match on their last 7 digits (country and trunk prefixes differ)


@dataclass(frozen=True)
class Violation:
    """One fact the reply states that no grounding answer states."""

    kind: str  # one of KINDS
    value: str  # normalised value, e.g. "4.95", "14 days", "northwind.example/returns"
    text: str  # as written in the reply


@dataclass(frozen=True)
class Faithfulness:
    """The verdict on one reply."""

    violations: tuple[Violation, ...]

    @property
    def faithful(self) -> bool:
        return not self.violations

    def __bool__(self) -> bool:
        return self.faithful


def check_faithfulness(reply: str, grounding: str | Iterable[str]) -> Faithfulness:
    """Which amounts, durations, URLs, emails and phone numbers in `reply` none of the `grounding` texts states.

    Args:
        reply: the written reply (placeholders like "{amount}" allowed).
        grounding: the answer text(s) the reply was written from.

    Returns:
        Faithfulness: `.faithful` is True when nothing was invented; `.violations` lists what was.
    """
    sources = [grounding] if isinstance(grounding, str) else list(grounding)
    allowed: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for text in sources:
        for kind, value, _ in extract_facts(text):
            allowed[kind].add(value)
    violations = []
    for kind, value, written in extract_facts(reply):
        if not _grounded(kind, value, allowed[kind]):
            violations.append(Violation(kind, value, written))
    return Faithfulness(tuple(dict.fromkeys(violations)))


def is_faithful(reply: str, grounding: str | Iterable[str]) -> bool:
    """True when the reply states no amount, duration, URL, email or phone number absent from the grounding."""
    return check_faithfulness(reply, grounding).faithful


def extract_facts(text: str) -> list[tuple[str, str, str]]:
    """(kind, normalised value, written text) for every checkable fact in `text`, in reading order per kind."""
    text = _SLOT.sub(" ", text)
    facts: list[tuple[str, str, str]] = []
    for match in _EMAIL.finditer(text):
        facts.append(("email", match.group(0).lower().rstrip("."), match.group(0)))
    no_email = _EMAIL.sub(" ", text)
    for match in _URL.finditer(no_email):
        facts.append(("url", _normalise_url(match.group(0)), match.group(0)))
    plain = _URL.sub(" ", no_email)
    for match in _AMOUNT.finditer(plain):
        number = match.group("pre") or match.group("post") or match.group("pct")
        value = _number(number)
        facts.append(("amount", f"{value}%" if match.group("pct") else value, match.group(0)))
    for match in _DURATION.finditer(plain):
        base, factor = _UNITS[match.group("unit").lower()]
        for part in (match.group("first"), match.group("second")):
            if part is None:
                continue
            count = _count(part)
            if count is not None:
                facts.append(("duration", f"{_number(str(count * factor))} {base}", match.group(0)))
    for match in _PHONE.finditer(plain):
        digits = re.sub(r"\D", "", match.group(0))
        if len(digits) >= _PHONE_TAIL and not _looks_like_other(match.group(0)):
            facts.append(("phone", digits, match.group(0).strip()))
    return facts


def _grounded(kind: str, value: str, allowed: set[str]) -> bool:
    if value in allowed:
        return True
    if kind == "phone":
        return any(value[-_PHONE_TAIL:] == other[-_PHONE_TAIL:] for other in allowed)
    if kind == "url":  # a deeper or shallower link on a grounded site path is not a new link
        return any(value.startswith(other) or other.startswith(value) for other in allowed if "/" in other) or (
            value in {other.split("/")[0] for other in allowed})
    return False


def _normalise_url(url: str) -> str:
    url = url.lower().rstrip(".,;:!?")
    url = re.sub(r"^https?://", "", url)
    url = re.sub(r"^www\.", "", url)
    return url.rstrip("/")


def _number(text: str) -> str:
    """'4,95' -> '4.95', '5.00' -> '5', '30' -> '30', '1,000' -> '1000'."""
    thousands = re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", text)
    value = float(text.replace(",", "") if thousands else text.replace(",", "."))
    return f"{value:g}" if value != int(value) else str(int(value))


def _count(word: str) -> float | None:
    word = word.lower()
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    try:
        return float(word.replace(",", "."))
    except ValueError:
        return None


def _looks_like_other(text: str) -> bool:
    """Times (8:00-20:00), dates (12.05.2024, 2024-05-12) and ranges of small numbers are not phone numbers."""
    stripped = text.strip()
    return (":" in stripped or bool(re.fullmatch(r"\d{1,4}\s*[-–]\s*\d{1,4}", stripped))
            or bool(re.fullmatch(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}", stripped)))
