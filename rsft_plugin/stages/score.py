"""Stage 3 — score: a reward in [0, w_similarity + w_rating] for every candidate.

    reward(c) = w_similarity * similarity(c) + w_rating * rating(c)

rating(c): the 👍/👎 customers gave answer c on this prompt or on near-identical prompts (embedding cosine at or
above `neighbour_cosine`), each sender counting for at most `max_weight_per_sender` votes, smoothed with a
Beta(prior_up, prior_down) prior:  (up + prior_up) / (up + down + prior_up + prior_down). No votes gives the prior
mean (0.5 by default): one vote is evidence, not certainty.

similarity(c): sentence-transformers cosine (the pretrained MiniLM, fixed across rounds) between candidate c's
text and the texts of the prompt's trusted answers, clipped to [0, 1]: answers whose smoothed rating on the
prompt's neighbourhood exceeds `trusted_rating`, and operator-curated answers (the topics of golden train questions
near the prompt). A trusted answer has similarity 1; with no trusted answer at all, similarity is 0.

With `noise_model: em` (rsft_plugin/stages/noise.py) rating(c) is instead the posterior probability that c is the
prompt's right answer: the live policy's q(c | prompt) (tempered by `prior_power`) as the prior, every neighbour
rating as an observation whose error rate EM estimates from all of the round's ratings at once. A 👎 on one answer
then raises the others in proportion to their prior, and an answer is trusted when its posterior exceeds
`trusted_rating` and it has at least one 👍 — one careless 👍 no longer makes an answer a reference. The rate is
estimated (and recorded with the round) under either model; with `noise_model: none` it changes no score
unless `trust_posterior` is set (below).

Choices ("Was it one of these?") and implicit signals (stages/evidence.py) join the ratings as weighted votes of
their own kind: a pick counts `feedback.choice_weight` 👍, a "thanks" `feedback.thanks_weight` 👍, and so on; in
the EM model they are observations with their own (fixed) error rates. Only explicit votes — 👍 and picks — can
make an answer trusted. With `trust_posterior` > 0 (either model) a rated answer is also trusted when the noise
model's posterior that it is right exceeds it, 👎 or not — a careless 👎 followed by "None of these" on an answer the
policy was sure of — and, under `noise_model: none`, rated by that posterior where it exceeds the smoothed rating.

Candidates and trusted answers are identified by their key (the answer id for retrieval); each distinct key's text
is embedded once per round.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..answer_bank import AnswerBank
from ..config import ScoreConfig
from ..golden import GoldenQuestion
from ..log import Turn
from . import noise
from .evidence import CHOICE, EXPLICIT, IMPLICIT, Evidence, rating_evidence
from .records import PromptSet, SampledCandidate, ScoredCandidate

Embed = Callable[[list[str]], torch.Tensor]


class Vote(NamedTuple):
    sender: str
    score: int  # 1 for 👍 (or a positive signal), 0 for 👎
    turn: int  # its evidence's position in the round's evidence
    weight: float = 1.0  # how many 👍/👎 it counts for (a rating: 1)
    kind: str = noise.RATING


@dataclass(frozen=True)
class Scores:
    scored: list[ScoredCandidate]
    noise: noise.NoiseEstimate  # the rating noise EM found (used for the rewards only with noise_model em)
    posterior_trusted: int = 0  # (prompt, answer) pairs trusted only because of `trust_posterior`


def score_candidates(candidates: list[SampledCandidate], prompt_set: PromptSet, rated_turns: list[Turn],
                     curated: list[GoldenQuestion], bank: AnswerBank, embed: Embed,
                     config: ScoreConfig, signals: Sequence[Evidence] = ()) -> list[ScoredCandidate]:
    """`score_round`'s scored candidates."""
    return score_round(candidates, prompt_set, rated_turns, curated, bank, embed, config, signals).scored


def score_round(candidates: list[SampledCandidate], prompt_set: PromptSet, rated_turns: list[Turn],
                curated: list[GoldenQuestion], bank: AnswerBank, embed: Embed, config: ScoreConfig,
                signals: Sequence[Evidence] = ()) -> Scores:
    """Reward every candidate from ratings, choices and implicit signals and similarity to trusted answers (see the
    module docstring).

    `rated_turns` and `signals` (stages/evidence.signal_evidence) must already exclude the turns kept out for the gate.
    """
    evidence = [*rating_evidence(rated_turns), *signals]
    votes = _neighbour_votes(prompt_set, evidence, embed, config.neighbour_cosine)
    texts = _texts_by_key(candidates, bank, _upvoted_replies(votes, evidence))
    row_of = {key: row for row, key in enumerate(texts)}
    key_embeddings = embed(list(texts.values()))  # (K, d), one row per distinct key
    # a trusted answer's similarity to itself is 1 by definition; its float32 self-dot can be 0.99999994
    key_similarity = (key_embeddings @ key_embeddings.T).clamp(0, 1).fill_diagonal_(1.0).cpu().numpy()  # (K, K)
    curated_answers = _curated_answers(prompt_set, curated, bank, embed, config.neighbour_cosine)
    by_prompt: dict[int, list[SampledCandidate]] = defaultdict(list)
    for candidate in candidates:
        by_prompt[candidate.prompt_id].append(candidate)
    estimate = estimate_noise(by_prompt, votes, config, {answer.id for answer in bank.answers})
    posterior_of = dict(zip(by_prompt, estimate.posteriors, strict=True))
    scored, posterior_trusted = [], 0
    for prompt_id, prompt_candidates in by_prompt.items():
        tallies = {answer: capped_votes(v, config.max_weight_per_sender) for answer, v in votes[prompt_id].items()}
        posterior = posterior_of[prompt_id]
        if config.noise_model == "em":
            ratings = {key: posterior.get(key, 0.0) for key in {*posterior, *(c.key for c in prompt_candidates)}}
        else:
            ratings = {key: smoothed_rating(*tallies.get(key, (0.0, 0.0)), config.prior_up, config.prior_down)
                       for key in {*tallies, *(c.key for c in prompt_candidates)}}
        overruled = _posterior_trusted(votes[prompt_id], posterior, config.trust_posterior)
        for answer in overruled:  # the noise model finds it right whatever its ratings say: rate it as EM does
            ratings[answer] = max(ratings[answer], posterior[answer])
        explicit_up = {answer: capped_votes([v for v in answer_votes if v.kind in EXPLICIT],
                                            config.max_weight_per_sender)[0]
                       for answer, answer_votes in votes[prompt_id].items()}
        trusted = curated_answers[prompt_id] | {
            answer for answer, up in explicit_up.items() if up > 0 and ratings[answer] > config.trusted_rating}
        posterior_trusted += len(overruled - trusted)
        trusted |= overruled
        trusted_rows = [row_of[key] for key in trusted if key in row_of]
        for candidate in prompt_candidates:
            up, down = tallies.get(candidate.key, (0.0, 0.0))
            rating = ratings[candidate.key]
            row = row_of[candidate.key]
            similarity = float(key_similarity[row, trusted_rows].max()) if trusted_rows else 0.0
            scored.append(ScoredCandidate(candidate, similarity, up, down, rating,
                                          reward(similarity, rating, config.w_similarity, config.w_rating)))
    return Scores(scored, estimate, posterior_trusted)


def _posterior_trusted(prompt_votes: dict[str, list[Vote]], posterior: dict[str, float],
                       bound: float) -> set[str]:
    """The answers customers rated on this prompt's neighbourhood, 👍 or 👎, whose posterior of being right exceeds
    `bound` (0: none) — `score.trust_posterior`. (A pick trusts its answer anyway; an answer that only a "None of
    these" turned down has no rating of its own, and a prior alone trusts nothing.)

    Why: with careless raters a 👎 followed by "None of these" on an answer the policy was sure of is often a
    careless 👎 (the right answer would otherwise have been among those offered); the noise model weighs that
    against the estimated rate of wrong ratings, where "one 👍" alone cannot (bench/none_of_these.py).
    """
    if bound <= 0:
        return set()
    return {answer for answer, answer_votes in prompt_votes.items()
            if posterior.get(answer, 0.0) > bound and any(v.kind == noise.RATING for v in answer_votes)}


def estimate_noise(by_prompt: dict[int, list[SampledCandidate]], votes: dict[int, dict[str, list[Vote]]],
                   config: ScoreConfig, bank_ids: set[str]) -> noise.NoiseEstimate:
    """EM over the scored prompts: prior = the live policy's q of each candidate, evidence = the neighbour ratings.

    A rated turn pooled into n prompts counts 1/n in the rate estimate; each sender's votes on one (prompt, answer)
    weigh at most `max_weight_per_sender`, as in the smoothed rating. Where every candidate is a bank answer
    (retrieval), the bank's other answers are the prior's unnamed ones (`noise.Question.unnamed`).
    """
    pooled: dict[int, int] = defaultdict(int)
    for prompt_id in by_prompt:
        for answer_votes in votes[prompt_id].values():
            for vote in answer_votes:
                pooled[vote.turn] += 1
    questions = []
    for prompt_id, prompt_candidates in by_prompt.items():
        prior = {c.key: c.q for c in prompt_candidates}
        observations = []
        for key, answer_votes in votes[prompt_id].items():
            per_sender: dict[str, int] = defaultdict(int)
            for vote in answer_votes:
                per_sender[vote.sender] += 1
            observations += [noise.Observation(
                key, bool(vote.score), vote.kind,
                vote.weight * min(1.0, config.max_weight_per_sender / per_sender[vote.sender]),
                1 / pooled[vote.turn]) for vote in answer_votes]
        questions.append(noise.Question(prior, observations, _unnamed(prior, bank_ids)))
    return estimate_questions(questions, config)


def _unnamed(prior: dict[str, float], bank_ids: set[str]) -> int:
    """How many answers the policy could have given besides those in `prior`: the rest of the bank when the
    candidates are bank answers; 1 (`other` as one answer) for written replies, whose alternatives are uncounted."""
    return max(len(bank_ids - prior.keys()), 1) if prior.keys() <= bank_ids else 1


def estimate_questions(questions: list[noise.Question], config: ScoreConfig) -> noise.NoiseEstimate:
    """EM as a round runs it, over questions already built (bench/none_of_these.py builds its own)."""
    start = noise.SignalRates(config.noise_start, config.noise_start)
    # Only the ratings' rates are estimated; picks and implicit signals keep the starting rates (their weights say
    # how much each counts).
    return noise.estimate(questions, {noise.RATING: start, CHOICE: start, IMPLICIT: start},
                          symmetric=config.noise_symmetric,
                          prior_power=config.prior_power, fit_prior_power=config.fit_prior_power,
                          prior_strength=config.noise_prior_strength)


def _texts_by_key(candidates: list[SampledCandidate], bank: AnswerBank,
                  upvoted: dict[str, str] | None = None) -> dict[str, str]:
    """key -> reply text: the bank's answers (what trusted keys name), in bank order, then any other candidate,
    then the written replies customers gave an explicit 👍 (`upvoted`: they may be trusted, and then a reference).

    For retrieval every candidate is a bank answer, so this embeds exactly the bank, in its order.
    """
    texts = {answer.id: answer.text for answer in bank.answers}
    for key, text in [*((c.key, c.text) for c in candidates), *(upvoted or {}).items()]:
        texts.setdefault(key, text)
    return texts


def _upvoted_replies(votes: dict[int, dict[str, list[Vote]]], evidence: list[Evidence]) -> dict[str, str]:
    """key -> logged text of each reply with an explicit 👍 near one of the round's prompts (the log gives the text
    of written replies; a bank answer keeps the bank's text, which `_texts_by_key` puts first)."""
    return {key: evidence[vote.turn].text for answers in votes.values() for key, answer_votes in answers.items()
            for vote in answer_votes if vote.score and vote.kind in EXPLICIT and evidence[vote.turn].text}


def smoothed_rating(up: float, down: float, prior_up: float = 1.0, prior_down: float = 1.0) -> float:
    """Posterior mean of a Beta(prior_up, prior_down) after `up` 👍 and `down` 👎."""
    return (up + prior_up) / (up + down + prior_up + prior_down)


def capped_votes(votes: Iterable[tuple], max_weight_per_sender: float) -> tuple[float, float]:
    """(👍, 👎) from (sender, 0/1[, turn, weight, ...]) votes (weight 1 when not given): a sender with n votes on one
    answer has each scaled by min(1, max_weight_per_sender / n), so flooding adds nothing while one pick keeps its
    weight."""
    per_sender: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for vote in votes:
        per_sender[vote[0]].append((vote[1], vote[3] if len(vote) > 3 else 1.0))
    up = down = 0.0
    for scored in per_sender.values():
        scale = min(1.0, max_weight_per_sender / len(scored))
        up += scale * sum(weight for score, weight in scored if score)
        down += scale * sum(weight for score, weight in scored if not score)
    return up, down


def reward(similarity: float, rating: float, w_similarity: float, w_rating: float) -> float:
    return w_similarity * similarity + w_rating * rating


def _neighbour_votes(prompt_set: PromptSet, evidence: list[Evidence], embed: Embed,
                     bound: float) -> dict[int, dict[str, list[Vote]]]:
    """For each prompt: reply key -> its votes from evidence about questions at or above `bound` cosine."""
    votes: dict[int, dict[str, list[Vote]]] = defaultdict(lambda: defaultdict(list))
    if not evidence or not prompt_set.prompts:
        return votes
    questions = list(dict.fromkeys(e.question for e in evidence))  # each distinct question embedded once
    row_of = {question: row for row, question in enumerate(questions)}
    close = ((prompt_set.embeddings @ embed(questions).T) >= bound).cpu().numpy()  # (P, Q)
    for column, item in enumerate(evidence):
        for p_row in close[:, row_of[item.question]].nonzero()[0].tolist():
            votes[prompt_set.prompts[p_row].id][item.key].append(
                Vote(item.sender, int(item.positive), column, item.weight, item.kind))
    return votes


def _curated_answers(prompt_set: PromptSet, curated: list[GoldenQuestion], bank: AnswerBank, embed: Embed,
                     bound: float) -> dict[int, set[str]]:
    """For each prompt: the keys of the answers of the topics of curated questions at or above `bound` cosine."""
    found: dict[int, set[str]] = defaultdict(set)
    if not curated or not prompt_set.prompts:
        return found
    by_topic: dict[str, set[str]] = defaultdict(set)
    for answer in bank.answers:
        by_topic[answer.topic].add(answer.id)
    close = (prompt_set.embeddings @ embed([q.question for q in curated]).T) >= bound  # (P, G)
    for p_row, g_col in close.nonzero().tolist():
        found[prompt_set.prompts[p_row].id] |= by_topic.get(curated[g_col].topic, set())
    return found
