"""Rounds, jobs and turns as the `rsft` CLI prints them (plain text from typed records)."""

from __future__ import annotations

from .errors import RsftError
from .log import RoundRecord, Turn

_STAT_LINES = ("prompts", "trainable_prompts", "gate_prompts", "replayed_prompts", "candidates", "named_candidates",
               "rated_turns_used", "rating_noise_rate", "posterior_trusted", "accepted", "acceptance_rate",
               "reward_mean")


def describe_round(row: RoundRecord | None, round_id: int) -> str:
    """A readable account of one round.

    Raises:
        RsftError: no such round (`row` is None).
    """
    if row is None:
        raise RsftError(f"there is no round {round_id} (rsft history lists them)")
    stats, gate = row.stats, row.gate
    lines = [f"round {row.id}: {row.status} — {row.reason or row.stage}",
             f"  started {row.started_at}, finished {row.finished_at or '-'}",
             f"  live version {row.live_version}, rule {row.rule}, new version {row.new_version or '-'}"]
    for key in _STAT_LINES:
        if key in stats:
            lines.append(f"  {key:<18} {stats[key]}")
    if "finetune" in stats:
        tuned = stats["finetune"]
        lines.append(f"  fine-tune          {tuned['epochs']} epochs (best {tuned['best_epoch']}), "
                     f"{tuned['train_pairs']} train / {tuned['val_pairs']} val pairs, "
                     f"{tuned['examples_per_second']} examples/s, {tuned.get('precision', 'float32')}"
                     + (f", {tuned['threads']} threads" if tuned.get("threads") else ""))
    if gate:
        lines.append(f"  held-out accuracy  {gate['live_accuracy']:.1%} (live) -> {gate['candidate_accuracy']:.1%} "
                     f"(candidate); kept-out ratings: {gate['rated_n']}")
        if gate.get("written"):  # the generative kind: the three measures of both writers' replies
            lines.append(f"  written replies    {written_line(gate['written'])}")
        for test in gate.get("tests", []):  # each paired test with its counts, p-value and level
            lines.append(f"  gate test          {test}")
    if row.stage_seconds:
        lines.append("  seconds per stage  " + ", ".join(f"{k} {v:.1f}" for k, v in row.stage_seconds.items()))
    if stats.get("acceptance_by_topic"):
        worst = sorted(stats["acceptance_by_topic"].items(), key=lambda item: item[1])[:5]
        lines.append("  lowest acceptance  " + ", ".join(f"{t} {r:.0%}" for t, r in worst))
    if stats.get("live_guard"):
        lines.append(f"  live guard         {stats['live_guard'].get('message', 'rolled back')}")
    if row.report_dir:
        lines.append(f"  report             {row.report_dir} (report.json and PNG plots)")
    return "\n".join(lines)


def written_line(written: dict) -> str:
    """The written gate's three measures, live -> candidate, on its n held-out questions."""
    live, candidate = written["live"], written["candidate"]
    return (f"topic-correct {live['topic_correct']:.1%} -> {candidate['topic_correct']:.1%}, similarity "
            f"{live['similarity']:.3f} -> {candidate['similarity']:.3f}, violations {live['violations']:.1%} -> "
            f"{candidate['violations']:.1%} ({written['n']} held-out questions)")


def history_lines(rounds: list[RoundRecord]) -> list[str]:
    """`rsft history`: one line per round, newest first, then why it ended as it did (or where it is)."""
    if not rounds:
        return ["no rounds yet; run `rsft retrain`"]
    lines = [" round  started (UTC)        status    rule         prompts  noise   accepted  rate    "
             "live   -> cand.  new"]
    for r in rounds:
        stats, gate = r.stats, r.gate
        lines.append(f"{r.id:>6}  {r.started_at[:19]:<19}  {r.status:<8}  {r.rule:<11}  "
                     f"{stats.get('trainable_prompts', '-'):>7}  {pct(stats.get('rating_noise_rate')):>6}  "
                     f"{stats.get('accepted', '-'):>8}  "
                     f"{pct(stats.get('acceptance_rate')):>6}  {pct(gate.get('live_accuracy')):>6} -> "
                     f"{pct(gate.get('candidate_accuracy')):>6}  {r.new_version or '-'}")
        if r.reason or r.status == "running":
            lines.append(f"        why: {r.reason or f'running, stage {r.stage} ({r.progress:.0%})'}")
        if stats.get("live_guard"):  # the promoted version was rolled back later by the live guard
            lines.append(f"        then: {stats['live_guard'].get('message', 'rolled back by the live guard')}")
    return lines


def status_lines(live: str | None, current: RoundRecord | None) -> list[str]:
    """`rsft status`: the live version and the newest round's stage and progress."""
    lines = [f"live model: {live or 'none'}"]
    if current is None:
        return [*lines, "no rounds yet"]
    lines.append(f"round {current.id}: {current.status}, stage {current.stage} "
                 f"({current.progress:.0%}) {current.message or ''}".rstrip())
    if current.reason:
        lines.append(f"  {current.reason}")
    return lines


def turn_lines(turns: list[Turn]) -> list[str]:
    """`rsft log`: recent turns, newest first. The sender id comes last and whole, to copy into `rsft forget`."""
    if not turns:
        return ["no turns logged yet"]
    lines = [f"{'time (UTC)':<19}  {'question':<40}  {'answer':<22}  score  version  rating  sender"]
    for turn in turns:
        rating = {1: "👍", 0: "👎"}.get(turn.rating, "-")  # type: ignore[arg-type]
        question = " ".join(turn.user_text.split())
        reply = turn.answer_id or turn.reply_key or "-"
        if turn.writing and not turn.writing.get("fallback"):
            reply = "✎ " + reply  # written by the generative kind, grounded in that answer
        lines.append(f"{turn.created_at[:19]:<19}  {clip(question, 40):<40}  {clip(reply, 22):<22}  "
                     f"{turn.score or 0:.2f}   {turn.model_version or '-':<7}  {rating:<6}  {turn.sender_id}")
    return lines


def pct(value: float | None) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
