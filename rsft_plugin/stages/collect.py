"""Stage 1 — collect: the questions logged since the last round, plus a bounded replay of earlier ones.

Near-duplicates (embedding cosine at or above `merge_cosine`) merge into one prompt that remembers every turn it
came from. A share of *rated* prompts is kept out of training for the gate to check against: a prompt is kept out when
one of its rated questions' text hashes (with the round's seed) into `gate_fraction` — by text, never by turn id, so
the same question is on the same side in every round and in every copy of the log (stages/seeding.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..config import CollectConfig
from ..log import Log, Turn
from ..pii import redact
from ..text import clean_text
from .records import Prompt, PromptSet, RoundStopped
from .seeding import content_rng, content_share

Embed = Callable[[list[str]], torch.Tensor]


def collect_prompts(store: Log, embed: Embed, config: CollectConfig, seed: int) -> PromptSet:
    """Gather, merge and split this round's prompts; `seed` is the round's (`sample.seed`).

    Raises:
        RoundStopped: fewer than `min_prompts` prompts are left for training.
    """
    since = store.last_completed_round_start()
    new_turns = [t for t in store.turns_for_round(since, config.max_prompts) if clean_text(t.user_text)]
    replayed = _replay(store, since, config.replay, seed)
    turns = new_turns + replayed
    if not turns:
        raise RoundStopped(f"no questions were logged since the last round (need {config.min_prompts})")
    # Personal data never reaches a prompt: prompts are what training examples and reports are made of.
    texts = [redact(clean_text(t.user_text)) for t in turns]
    embeddings = embed(texts)  # (T, d)
    groups = _merge(embeddings, config.merge_cosine)
    replay_ids = {t.id for t in replayed}
    prompts = []
    for prompt_id, members in enumerate(groups):
        turn_ids = tuple(turns[i]["id"] for i in members)
        # Any rated question that hashes into the gate share keeps its whole prompt out of training.
        gate_only = any(_kept_for_gate(texts[i], seed, config.gate_fraction) for i in members
                        if turns[i]["rating"] is not None)
        prompts.append(Prompt(prompt_id, texts[members[0]], turn_ids, all(t in replay_ids for t in turn_ids),
                              gate_only))
    result = PromptSet(prompts, embeddings[[g[0] for g in groups]])
    if len(result.trainable) < config.min_prompts:
        raise RoundStopped(f"only {len(result.trainable)} distinct new prompts since the last round; "
                           f"a round needs at least {config.min_prompts} (collect.min_prompts)")
    return result


def _replay(store: Log, since: str | None, limit: int, seed: int) -> list[Turn]:
    if since is None or limit == 0:
        return []
    recent = [t for t in store.turns_before(since, limit * 5) if clean_text(t.user_text)]
    # seeded by the questions in the pool, in order: the same earlier traffic replays the same sample
    return replay_sample(recent, limit, content_rng(seed, "replay", *(clean_text(t.user_text) for t in recent)))


def replay_sample(recent: list, limit: int, rng: np.random.Generator) -> list:
    """Up to `limit` items drawn without replacement from `recent` (the most recent earlier turns), in order."""
    if len(recent) <= limit:
        return list(recent)
    return [recent[i] for i in sorted(rng.choice(len(recent), size=limit, replace=False))]


def _merge(embeddings: torch.Tensor, bound: float) -> list[list[int]]:
    """Greedy clustering in order: each text joins the first earlier representative it is `bound`-close to."""
    similarities = (embeddings @ embeddings.T).cpu().numpy()  # (T, T)
    groups: dict[int, list[int]] = {}
    for i in range(len(similarities)):
        close = [r for r in groups if similarities[i, r] >= bound]
        home = close[0] if close else i
        groups.setdefault(home, []).append(i)
    return list(groups.values())


def _kept_for_gate(question: str, seed: int, fraction: float) -> bool:
    """Stable across rounds and logs: the same question text is always on the same side of the split."""
    return content_share(seed, "gate-split", question) < fraction
