"""Stage 2 — sample: K candidates per prompt from the live model's policy, each with its key, text and q(c | prompt).

Each prompt draws from its own generator, seeded by `sample.seed` and the prompt's text (stages/seeding.py): its
candidates do not depend on which other prompts the round has, nor on their order.
"""

from __future__ import annotations

from ..config import SampleConfig
from ..models.base import ResponsePolicy
from .records import Progress, Prompt, SampledCandidate, no_progress
from .seeding import content_rng

_BATCH = 256


def sample_candidates(live: ResponsePolicy, prompts: list[Prompt], config: SampleConfig,
                      progress: Progress = no_progress) -> list[SampledCandidate]:
    """Draw `config.k` candidates per prompt (distinct unless `with_replacement`) at `config.temperature`."""
    sampled: list[SampledCandidate] = []
    for start in range(0, len(prompts), _BATCH):
        batch = prompts[start:start + _BATCH]
        generators = [content_rng(config.seed, "sample", p.text) for p in batch]
        draws = live.sample_many([p.text for p in batch], config.k, config.temperature, generators,
                                 replace=config.with_replacement)
        for prompt, candidates in zip(batch, draws, strict=True):
            sampled.extend(SampledCandidate(prompt.id, draw, c.key, c.text, c.answer_id, c.topic, c.probability,
                                            c.cosine, live.name, tuple(c.violations))
                           for draw, c in enumerate(candidates))
        progress("sample", min(1.0, (start + len(batch)) / len(prompts)), f"{len(sampled)} candidates")
    return sampled
