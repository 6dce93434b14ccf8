"""Stage 2 — sample: K candidates per prompt from the live model's policy, each with its key, text and q(c | prompt).

Each prompt draws from its own generator, seeded by `sample.seed` and the prompt's text (stages/seeding.py): its
candidates do not depend on which other prompts the round has, nor on their order.

With `sample.named` a prompt's candidates also include the answers its own customers *named* — rated 👍 (unless
`sample.named_ratings` is off) or picked under "Was it one of these?" — that the K draws missed, after them (draw
numbers from K on), with their q under the same policy. Why: a pick is usually an answer the live model ranked second
to fourth, and at the sampling temperature the K draws miss it about one time in five (measured on banking77:
docs/benchmarks.md, "Named answers"); the prompt then teaches nothing although the customer said what was right.
The proposal becomes the policy's K draws plus the named answers, each scored and rejected like any other candidate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ..config import SampleConfig
from ..models.base import ResponsePolicy, ScoresNamedAnswers
from .evidence import CHOICE, EXPLICIT, Evidence
from .records import Progress, Prompt, SampledCandidate, no_progress
from .seeding import content_rng

_BATCH = 256
Named = Mapping[int, Sequence[str]]  # prompt id -> answer keys its customers named


def sample_candidates(live: ResponsePolicy, prompts: list[Prompt], config: SampleConfig,
                      progress: Progress = no_progress, named: Named | None = None) -> list[SampledCandidate]:
    """Draw `config.k` candidates per prompt (distinct unless `with_replacement`) at `config.temperature`, then add
    the `named` answers the draws missed (a kind that cannot score bank answers by key adds none)."""
    named = named if isinstance(live, ScoresNamedAnswers) else None
    sampled: list[SampledCandidate] = []
    for start in range(0, len(prompts), _BATCH):
        batch = prompts[start:start + _BATCH]
        generators = [content_rng(config.seed, "sample", p.text) for p in batch]
        draws = live.sample_many([p.text for p in batch], config.k, config.temperature, generators,
                                 replace=config.with_replacement)
        added = _missed_named(live, batch, draws, named, config.temperature) if named else [[] for _ in batch]
        for prompt, candidates, extra in zip(batch, draws, added, strict=True):
            sampled.extend(SampledCandidate(prompt.id, draw, c.key, c.text, c.answer_id, c.topic, c.probability,
                                            c.cosine, live.name, tuple(c.violations), named=draw >= len(candidates))
                           for draw, c in enumerate(candidates + extra))
        progress("sample", min(1.0, (start + len(batch)) / len(prompts)), f"{len(sampled)} candidates")
    return sampled


def _missed_named(live: ScoresNamedAnswers, batch: list[Prompt], draws: list[list], named: Named,
                  temperature: float) -> list[list]:
    """Per prompt of `batch`, its named answers that its draws do not hold, as candidates."""
    missed = [_not_drawn(named.get(p.id, ()), drawn) for p, drawn in zip(batch, draws, strict=True)]
    return live.named_candidates([p.text for p in batch], missed, temperature)


def _not_drawn(keys: Sequence[str], drawn: list) -> list[str]:
    """`keys` without repeats and without those among the `drawn` candidates, in order."""
    drawn_keys = {c.key for c in drawn}
    return [key for key in dict.fromkeys(keys) if key not in drawn_keys]


def named_answers(prompts: Iterable[Prompt], evidence: Iterable[Evidence],
                  ratings: bool = True) -> dict[int, list[str]]:
    """Per prompt, the answers its own turns were given explicit positive evidence for (a 👍 unless not `ratings`,
    or a pick; weight-0 kinds are not in `evidence`), in the order of its turns."""
    kinds = EXPLICIT if ratings else (CHOICE,)
    by_turn: dict[str, list[str]] = {}
    for vote in evidence:
        if vote.positive and vote.kind in kinds and vote.weight > 0:
            by_turn.setdefault(vote.turn_id, []).append(vote.key)
    named = {p.id: list(dict.fromkeys(key for turn in p.turn_ids for key in by_turn.get(turn, ()))) for p in prompts}
    return {prompt_id: keys for prompt_id, keys in named.items() if keys}
