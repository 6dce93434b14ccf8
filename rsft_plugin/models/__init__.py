"""Response models: the policy interface, the kinds behind it, versions on disk and the live one.

    base.py       VersionInfo, the ResponsePolicy protocol and its records (Answered, Candidate, TrainingPair, ...)
    kinds.py      kind name -> class, imported lazily; load_version picks the class from version.json's kind
    retrieval.py  the retrieval kind (bi-encoder over the answer bank); retrieval_training.py its fine-tuning
    encoder.py    the pretrained sentence encoder
    registry.py   versions on disk and the LIVE pointer
    live.py       the live model inside a serving process, hot-swapped

Importing this package (or base, kinds, registry) never imports torch: the web server reads versions through it.
"""

from __future__ import annotations

from .base import (
    ANSWERS_FILE,
    VERSION_FILE,
    Answered,
    Candidate,
    FinetuneResult,
    Ranked,
    ResponsePolicy,
    TrainingPair,
    VersionInfo,
    read_version_info,
)
from .kinds import KINDS, load_version, policy_class, prepare_machine, pretrained_policy, register_kind

__all__ = ["ANSWERS_FILE", "KINDS", "VERSION_FILE", "Answered", "Candidate", "FinetuneResult", "Ranked",
           "ResponsePolicy", "TrainingPair", "VersionInfo", "load_version", "policy_class", "prepare_machine",
           "pretrained_policy", "read_version_info", "register_kind"]
