"""The gate's statistics, as plain functions over counts (no model here).

Two models answer the same questions; only the questions where they *differ* say which is better. With `wins`
questions the candidate alone gets right and `losses` the live model alone gets right, "no difference" means each
of those n = wins + losses questions is a fair coin: wins ~ Binomial(n, 1/2). That is the exact McNemar test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb


@dataclass(frozen=True)
class PairedCounts:
    """Two models on the same `n` items: `live_right` the live model gets right; of the items where they differ,
    `wins` the candidate alone gets right and `losses` the live model alone."""

    n: int
    live_right: int
    wins: int
    losses: int

    @property
    def discordant(self) -> int:
        return self.wins + self.losses

    @property
    def live_accuracy(self) -> float:
        return self.live_right / self.n if self.n else 0.0

    @property
    def candidate_accuracy(self) -> float:
        return (self.live_right + self.wins - self.losses) / self.n if self.n else 0.0

    @property
    def gain(self) -> float:
        """The candidate's accuracy minus the live model's, on these items."""
        return (self.wins - self.losses) / self.n if self.n else 0.0

    @property
    def ahead(self) -> bool:
        """The candidate alone gets more of the differing items right than the live model alone."""
        return self.wins > self.losses

    def to_dict(self) -> dict[str, int]:
        return {"n": self.n, "live_right": self.live_right, "wins": self.wins, "losses": self.losses}

    @classmethod
    def from_dict(cls, numbers: dict[str, int]) -> PairedCounts:
        return cls(int(numbers["n"]), int(numbers["live_right"]), int(numbers["wins"]), int(numbers["losses"]))

    @classmethod
    def of(cls, live: list[bool], candidate: list[bool]) -> PairedCounts:
        """Counts from per-item outcomes (aligned lists: True = that model got the item right)."""
        if len(live) != len(candidate):
            raise ValueError(f"{len(live)} live outcomes for {len(candidate)} candidate outcomes")
        wins = sum(c and not v for v, c in zip(live, candidate, strict=True))
        losses = sum(v and not c for v, c in zip(live, candidate, strict=True))
        return cls(len(live), sum(live), wins, losses)


    @classmethod
    def of_scores(cls, live: list[float], candidate: list[float], tie: float = 1e-6) -> PairedCounts:
        """Sign counts from per-item scores: `wins` items where the candidate scores higher by more than `tie`,
        `losses` where it scores lower; the rest tie and carry no evidence (`live_right` is 0: there is no "right")."""
        if len(live) != len(candidate):
            raise ValueError(f"{len(live)} live scores for {len(candidate)} candidate scores")
        wins = sum(c - v > tie for v, c in zip(live, candidate, strict=True))
        losses = sum(v - c > tie for v, c in zip(live, candidate, strict=True))
        return cls(len(live), 0, wins, losses)


def upper_tail(k: int, n: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exact (integer arithmetic, one rounding at the end)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return sum(comb(n, i) for i in range(k, n + 1)) / 2**n


def better_p(counts: PairedCounts) -> float:
    """One-sided exact McNemar p-value for "the candidate is better": P(X >= wins), X ~ Bin(wins + losses, 1/2)."""
    return upper_tail(counts.wins, counts.discordant)


def worse_p(counts: PairedCounts) -> float:
    """One-sided exact McNemar p-value for "the candidate is worse": P(X >= losses)."""
    return upper_tail(counts.losses, counts.discordant)


def gain_lower_bound(counts: PairedCounts, level: float) -> float:
    """One-sided (1 - level) lower confidence bound of the accuracy gain, given the discordant questions.

    Clopper-Pearson bound π_L on the share of discordant questions the candidate wins, turned into a gain:
    n_discordant · (2 π_L − 1) / n. It is positive exactly when `better_p(counts) <= level` (the two are the same
    exact test), so margin 0 reproduces McNemar and a negative margin tolerates a small loss.
    """
    if counts.n == 0:
        return 0.0
    discordant = counts.discordant
    if discordant == 0:
        return 0.0
    from scipy.stats import beta  # imported here: only this test needs it

    share = 0.0 if counts.wins == 0 else float(beta.ppf(level, counts.wins, discordant - counts.wins + 1))
    return discordant * (2 * share - 1) / counts.n


def gain_standard_error(counts: PairedCounts) -> float:
    """Standard error of the accuracy gain on these items: sqrt(changed - (wins - losses)² / n) / n.

    The paired difference's spread: it grows with the square root of the changed items and shrinks with the items
    asked, so it says how large a gain this many held-out questions can tell from none.
    """
    if counts.n == 0:
        return 0.0
    net = counts.wins - counts.losses
    return max(0.0, counts.discordant - net * net / counts.n) ** 0.5 / counts.n


def fewest_wins(discordant: int, n: int, passes: Callable[[PairedCounts], bool]) -> int | None:
    """The fewest of `discordant` changed items (out of `n`) the candidate must win for `passes` to hold, or None
    when not even winning all of them would. `passes` must be monotone in the wins (every promotion test is)."""
    def counts(wins: int) -> PairedCounts:
        return PairedCounts(n, 0, wins, discordant - wins)

    if discordant == 0 or not passes(counts(discordant)):
        return None
    low, high = 0, discordant  # passes(high) holds; find the smallest such
    while low < high:
        middle = (low + high) // 2
        if passes(counts(middle)):
            high = middle
        else:
            low = middle + 1
    return low


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (family-wise error control, step-down): reject where adjusted <= level."""
    ordered = sorted(p_values.items(), key=lambda item: (item[1], item[0]))
    m, running, adjusted = len(ordered), 0.0, {}
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted
