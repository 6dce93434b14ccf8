"""Personal data out of everything but the live log: emails, phone numbers, payment cards, IBANs, postal codes.

`redact(text)` replaces each with a placeholder ([EMAIL], [PHONE], [CARD], [IBAN], [POSTCODE]). It runs before
user text can reach a training example, a round report or an export; the raw text stays only in the `turns`
table, and only for `privacy.retention_days`.

What counts (and what deliberately does not):
- cards: 13–19 digits (spaces/dashes allowed) that pass the Luhn check — a random 16-digit number does not;
- IBANs: country code, check digits and 11–30 characters that pass the ISO 13616 mod-97 check;
- phone numbers: 9–15 digits with an optional +, spaces, dots, dashes or brackets; a number written after '#'
  or "order" is an order number, not a phone number;
- postal codes: UK postcodes, US ZIP+4, a US state followed by a ZIP, and any code after the words
  zip / postcode / postal code / PLZ. A bare five-digit number is too often an order or amount to be redacted.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CARD = re.compile(r"(?<![\w#])(?:\d[ -]?){12,18}\d(?!\w)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w#])(?<!order )(?<!order no )(?<!order number )\+?\(?\d[\d\s().-]{7,20}\d(?!\w)",
                    re.IGNORECASE)
_US_STATES = ("AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|"
              "ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC")
_POSTCODES = [
    re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b"),  # UK, e.g. SW1A 1AA, M1 1AE
    re.compile(r"\b\d{5}-\d{4}\b"),  # US ZIP+4
    re.compile(rf"\b(?:{_US_STATES})\s+\d{{5}}\b"),  # "NY 10001"
]

_KEYWORD_POSTCODE = re.compile(r"(\b(?:zip(?:\s*code)?|post\s*code|postal\s*code|plz)\s*[:#]?\s*)"
                               r"[A-Z0-9][A-Z0-9-]{1,8}[A-Z0-9]\b", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with personal data replaced by placeholders; anything else is left exactly as it was."""
    if not text:
        return text
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(_iban_or_keep, text)
    text = _CARD.sub(lambda m: "[CARD]" if _luhn_valid(m.group(0)) else m.group(0), text)
    for pattern in _POSTCODES:
        text = pattern.sub("[POSTCODE]", text)
    text = _KEYWORD_POSTCODE.sub(lambda m: m.group(1) + "[POSTCODE]", text)
    return _PHONE.sub(lambda m: "[PHONE]" if 9 <= _digit_count(m.group(0)) <= 15 else m.group(0), text)


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _luhn_valid(candidate: str) -> bool:
    digits = [int(ch) for ch in candidate if ch.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _iban_or_keep(match: re.Match) -> str:
    """The longest valid IBAN at the start of the match (the pattern may run on into following words)."""
    found = match.group(0)
    for end in range(len(found), 0, -1):
        if (end == len(found) or found[end] == " ") and _iban_valid(found[:end]):
            return "[IBAN]" + found[end:]
    return found


def _iban_valid(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1
