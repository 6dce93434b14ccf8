"""Text normalisation: what serving, training and evaluation all do to a customer's words before a model sees them.

One function in one low-level module, so that the question the live model answered, the prompt a round trains on
and the question the gate or `rsft eval` scores are normalised exactly alike. The raw text is what the log keeps.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Control, format and separator characters that carry no words; surrogates ("Cs") cannot be encoded as UTF-8 at
# all (a lone "\ud800" from a JSON body would crash the tokenizer), so they go too.
_BLANKED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Markup tags (`<script>`, `</b>`, `<img src=x ...>`): the chat is plain text, so a tag is never what the customer
# asks; left in, "<script>alert(17)</script>" looked like a question about the newsletter (cosine 0.32). Only a
# "<" directly followed by a letter or "/" starts a tag, so "under <50 euros" or "<3" stay as written.
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>")


def clean_text(text: Any) -> str:
    """The message as a model should see it: control, format and surrogate characters and markup tags become
    spaces, whitespace collapsed; anything that is not a string is empty."""
    if not isinstance(text, str):
        return ""
    kept = "".join(" " if unicodedata.category(ch) in _BLANKED else ch for ch in text)
    kept = _TAG.sub(" ", kept)
    return " ".join(kept.split())


def storable_text(text: str) -> str:
    """The raw message as a log can keep it: characters UTF-8 cannot encode (lone surrogates) are written as
    escapes (`\\ud800`), everything else verbatim."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
