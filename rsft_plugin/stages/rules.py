"""Rejection rules, registered by name: which scored candidates of a round become training examples.

threshold    keep c when similarity(c) >= s_min and rating(c) >= r_min ("low-similarity or low-rated" go).
statistical  rejection sampling. Target p(c) ∝ q(c)·exp(r(c)/β), proposal q = the live policy, envelope
             M = exp(r_max/β) so that p̃(c) = q(c)·exp(r(c)/β) <= M·q(c). Draw u ~ U(0, M·q(c)) and accept when
             u <= p̃(c); i.e. accept with probability exp((r(c) − r_max)/β). Its parameter `reject.r_max`, the
             envelope:
               prompt    (default) the target is each prompt's own tilted policy over the answers that clear
                         s_min and r_min, p(c|x) ∝ q(c|x)·exp(r(c)/β)·[eligible], and r_max(x) is the prompt's
                         best eligible reward: every prompt with a good answer teaches something, prompts
                         without one teach nothing.
               observed  one global target; r_max is the largest reward of the round's candidates, so a
                         prompt whose best answer is below the round's best is accepted exp(−gap/β) as often.
               bound     as observed, with r_max = w_similarity + w_rating, the largest reward possible.
             Either way p̃ <= M·q holds for every candidate it is applied to. With `sample.named` a prompt's
             candidates also hold the answers its customers named that the draws missed (stages/sample.py): the
             proposal is then the draws plus those answers, and the rule decides on them like on any other.
             docs/benchmarks.md: the global envelope starves the fine-tune (up to half as many accepted pairs,
             at lower precision); the per-prompt one accepts about as many as best_of_n.
best_of_n    per prompt, keep the highest-reward candidate if it clears the same two thresholds.

A generative round draws two kinds of candidate per prompt (records.SampledCandidate.written): replies the writer
wrote, and the retriever's own bank answers (generative.retriever_draws). Each kind is its own rejection problem —
"per prompt" above means per prompt and kind, so a bank answer's perfect similarity to a trusted answer never sets
the envelope of the written replies — and a written reply clears the similarity threshold at `s_min_written`: a
paraphrase of a trusted answer has a lower cosine to it than the answer itself.

A rule is a class with a `name`, built from the `reject` section of rsft.yml, that gives each candidate a
`Verdict` and describes its boundary for the round report. The built-in rules register with the same decorator a
new rule uses; registering one makes it valid for `reject.rule`, `rsft retrain --rule` and the benchmark:

    @register_rule
    class AboveOne(Rule):
        name = "above_one"
        help = "keep every candidate whose reward exceeds 1."

        def decide(self, scored, r_max, rng):
            return [Verdict(s.reward > 1.0, float(s.reward > 1.0)) for s in scored]

Plain functions over floats: this module imports neither torch nor the stage records (config/loop.py validates
`reject.rule` against it, and the web server loads the config).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeVar

from ..errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from ..config import RejectConfig
    from .records import ScoredCandidate

RuleClass = TypeVar("RuleClass", bound="type[Rule]")
Boundary = dict[str, float | str]
Legend = tuple[list[Any], list[str]]

ENVELOPES = ("prompt", "observed", "bound")  # the statistical rule's `reject.r_max`
_REGISTRY: dict[str, type[Rule]] = {}


class Verdict(NamedTuple):
    """A rule's decision on one candidate."""

    accepted: bool
    probability: float  # the rule's probability of accepting it (0 or 1 for deterministic rules)


class Rule:
    """A rejection rule. Subclass it, set `name` and `help`, implement `decide`, and decorate with `register_rule`.

    Override `from_config` when the rule has parameters in the `reject` section, `boundary` and `draw_boundary` to
    show them on the round report's reward histogram.
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""

    @classmethod
    def from_config(cls, config: RejectConfig) -> Rule:
        """The rule with its parameters read from the `reject` section."""
        return cls()

    def decide(self, scored: Sequence[ScoredCandidate], r_max: float, rng: np.random.Generator) -> list[Verdict]:
        """One verdict per candidate, in the order given. `r_max` is the round's global envelope (observed or bound);
        draws from `rng` only, so a round is reproducible from its seed."""
        raise NotImplementedError

    def boundary(self, r_max: float) -> Boundary:
        """What the report shows of this rule's decision boundary (recorded with the round's outcome)."""
        return {}

    @classmethod
    def draw_boundary(cls, axes: Any, boundary: Boundary) -> Legend:
        """Draw `boundary` (from `boundary()`) on the reward histogram's matplotlib axes: a title, a curve.

        Returns extra legend entries (handles, labels) for what it drew."""
        return [], []


def register_rule(rule: RuleClass) -> RuleClass:
    """Class decorator: make `rule` available under `rule.name`. Raises ValueError on a name already taken."""
    name = getattr(rule, "name", "")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a rule needs a `name` that is an identifier, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not rule:
        raise ValueError(f"a rule named {name!r} is already registered ({_REGISTRY[name].__qualname__})")
    _REGISTRY[name] = rule
    return rule


def rule_names() -> tuple[str, ...]:
    """The registered rules' names, in the order they were registered."""
    return tuple(_REGISTRY)


def get_rule(name: str) -> type[Rule]:
    """The rule class registered as `name`. Raises ConfigError naming the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(unknown_rule_message(name)) from None


def unknown_rule_message(name: object) -> str:
    return f"unknown rule {name!r}; valid rules are {', '.join(rule_names())}"


def clears(s: ScoredCandidate, s_min: float, r_min: float, s_min_written: float) -> bool:
    """The candidate is similar enough to a trusted answer (a written reply: `s_min_written`) and rated well
    enough."""
    return s.similarity >= (s_min_written if s.candidate.written else s_min) and s.rating >= r_min


def group_of(s: ScoredCandidate) -> tuple[int, bool]:
    """What a per-prompt rule compares a candidate with: its prompt's candidates of the same kind."""
    return s.candidate.prompt_id, s.candidate.written


def statistical_verdicts(scored: Sequence[ScoredCandidate], beta: float, r_max: float,
                         rng: np.random.Generator) -> list[Verdict]:
    """The classic rule: draw u ~ U(0, M·q(c)), accept when u <= p̃(c) = q(c)·exp(r(c)/β), with M = exp(r_max/β).

    Both sides are divided by M·q(c): u/(M·q(c)) ~ U(0, 1) is compared with exp((r(c) − r_max)/β). The decision is
    the same, and it stays exact where q itself is not representable: exp(r_max/β) overflows for small β, and a
    written reply's q (a product over its tokens) underflows to 0 beyond log q ≈ −745, where the undivided test
    would accept every such reply (u ~ U(0, 0) = 0 <= 0).
    """
    verdicts = []
    for s in scored:
        if s.reward > r_max + 1e-9:
            raise ValueError(f"reward {s.reward} exceeds r_max {r_max}: p <= M·q would not hold")
        accept_probability = math.exp((s.reward - r_max) / beta)  # p̃(c) / (M·q(c))
        verdicts.append(Verdict(bool(rng.uniform(0.0, 1.0) <= accept_probability), accept_probability))
    return verdicts


@dataclass(frozen=True)
class _Thresholds(Rule):
    s_min: float = 0.8
    r_min: float = 0.5
    s_min_written: float = 0.5

    @classmethod
    def from_config(cls, config: RejectConfig) -> Rule:
        return cls(config.s_min, config.r_min, config.s_min_written)

    def clears(self, s: ScoredCandidate) -> bool:
        return clears(s, self.s_min, self.r_min, self.s_min_written)

    def boundary(self, r_max: float) -> Boundary:
        return {"s_min": self.s_min, "r_min": self.r_min, "s_min_written": self.s_min_written}

    @classmethod
    def draw_boundary(cls, axes: Any, boundary: Boundary) -> Legend:
        axes.set_title(f"thresholds: similarity ≥ {boundary['s_min']}, rating ≥ {boundary['r_min']}", fontsize=9)
        return [], []


@register_rule
@dataclass(frozen=True)
class Threshold(_Thresholds):
    name: ClassVar[str] = "threshold"
    help: ClassVar[str] = "keep each candidate with similarity >= s_min and rating >= r_min."

    def decide(self, scored: Sequence[ScoredCandidate], r_max: float, rng: np.random.Generator) -> list[Verdict]:
        keep = [self.clears(s) for s in scored]
        return [Verdict(k, float(k)) for k in keep]


@register_rule
@dataclass(frozen=True)
class Statistical(Rule):
    name: ClassVar[str] = "statistical"
    help: ClassVar[str] = "rejection sampling of p(c) ∝ q(c)·exp(r(c)/beta) under the envelope reject.r_max."
    beta: float = 0.2
    envelope: str = "prompt"  # reject.r_max: prompt | observed | bound (the caller computes the global r_max)
    s_min: float = 0.8  # the per-prompt envelope's eligibility thresholds
    r_min: float = 0.5
    s_min_written: float = 0.5

    def __post_init__(self) -> None:
        if self.envelope not in ENVELOPES:
            raise ValueError(f"unknown envelope {self.envelope!r}; valid envelopes are {', '.join(ENVELOPES)}")

    @classmethod
    def from_config(cls, config: RejectConfig) -> Rule:
        return cls(config.beta, config.r_max, config.s_min, config.r_min, config.s_min_written)

    def decide(self, scored: Sequence[ScoredCandidate], r_max: float, rng: np.random.Generator) -> list[Verdict]:
        if self.envelope == "prompt":
            return self._per_prompt(scored, rng)
        return statistical_verdicts(scored, self.beta, r_max, rng)

    def _per_prompt(self, scored: Sequence[ScoredCandidate], rng: np.random.Generator) -> list[Verdict]:
        """The classic rule once per prompt x (and kind: `group_of`), on the answers that clear the thresholds.

        Target p(c|x) ∝ q(c|x)·exp(r(c)/β)·[c clears both thresholds]; envelope M_x = exp(r_max(x)/β) with r_max(x)
        the prompt's best eligible reward, so the prompt's best answer is always accepted and near-ties sometimes.
        """
        eligible = [clears(s, self.s_min, self.r_min, self.s_min_written) for s in scored]
        best: dict[tuple[int, bool], float] = {}
        for s, ok in zip(scored, eligible, strict=True):
            if ok:
                best[group_of(s)] = max(best.get(group_of(s), s.reward), s.reward)
        verdicts = []
        for s, ok in zip(scored, eligible, strict=True):
            if ok:
                verdicts += statistical_verdicts([s], self.beta, best[group_of(s)], rng)
            else:
                verdicts.append(Verdict(False, 0.0))
        return verdicts

    def boundary(self, r_max: float) -> Boundary:
        if self.envelope == "prompt":
            return {"beta": self.beta, "r_max": "per prompt", "s_min": self.s_min, "r_min": self.r_min,
                    "s_min_written": self.s_min_written}
        return {"beta": self.beta, "r_max": r_max}

    @classmethod
    def draw_boundary(cls, axes: Any, boundary: Boundary) -> Legend:
        beta, r_max = boundary["beta"], boundary["r_max"]
        if isinstance(r_max, str):  # per prompt: no one curve to draw
            axes.set_title(f"per-prompt envelope, β = {beta}; eligible: similarity ≥ {boundary['s_min']}, "
                           f"rating ≥ {boundary['r_min']}", fontsize=9)
            return [], []
        axis = axes.twinx()
        xs = [r_max * i / 200 for i in range(201)]
        axis.plot(xs, [math.exp((x - r_max) / float(beta)) for x in xs], color="#d62728",
                  label="P(accept) = exp((r − r_max)/β)")
        axis.set_ylabel("acceptance probability")
        axis.set_ylim(0, 1.05)
        return axis.get_legend_handles_labels()


@register_rule
@dataclass(frozen=True)
class BestOfN(_Thresholds):
    name: ClassVar[str] = "best_of_n"
    help: ClassVar[str] = "per prompt (and kind), keep the highest-reward candidate if it clears s_min and r_min."

    def decide(self, scored: Sequence[ScoredCandidate], r_max: float, rng: np.random.Generator) -> list[Verdict]:
        best: dict[tuple[int, bool], ScoredCandidate] = {}
        for s in scored:
            current = best.get(group_of(s))
            if current is None or s.reward > current.reward:
                best[group_of(s)] = s
        winners = {id(s) for s in best.values() if self.clears(s)}
        return [Verdict(id(s) in winners, float(id(s) in winners)) for s in scored]
