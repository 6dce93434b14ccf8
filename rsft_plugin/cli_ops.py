"""The `rsft` commands that run servers and look after personal data: serve, web, simulate, forget, backup,
retention, config. They register on the group in cli_common.py, as the model and round commands of cli.py do."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from .cli_common import _config, _fail_cleanly, _parts, main


@main.command("serve")
@click.option("--scale", is_flag=True, help="Several Rasa and action servers behind HAProxy, with PostgreSQL and "
                                            "Redis (rsft.yml's scale section; docs/scaling.md).")
@click.pass_context
@_fail_cleanly
def serve_command(ctx: click.Context, scale: bool) -> None:
    """Start Rasa, the action server and the chat page; Ctrl-C stops all of them (this is `make run`).

    A server that dies is restarted (see `rsft status`); serve exits non-zero only when one keeps dying.

    Trains the Rasa model first when bot/ changed, and creates the first model version when there is none.
    With --scale (`make run-scaled`): scale.rasa_servers Rasa and scale.action_servers action servers behind a
    load balancer on the same ports, the log and Rasa's trackers in PostgreSQL, Rasa's lock store in Redis.

    Example: rsft serve --scale
    """
    from .launcher import Stack
    from .log import describe_log
    from .scaled import ScaledStack
    from .versions import create_initial_version

    config = _config(ctx)
    create_initial_version(_parts(ctx))
    stack = ScaledStack(config) if scale else Stack(config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the servers like Ctrl-C does
    try:
        stack.start()
        from .secrets import OPERATOR_TOKEN, describe_source

        click.echo(f"\n  Chat with the assistant:  {stack.web_url}\n"
                   f"  Operator console:         {stack.web_url}/console\n"
                   f"  Operator token:           {describe_source(config.paths.run_dir, OPERATOR_TOKEN)}\n"
                   f"  Rasa REST channel:        {stack.rasa_url}/webhooks/rest/webhook\n"
                   f"  Plugin log:               {stack.describe_log() if scale else describe_log(config)}\n"
                   f"  Server logs:              {stack.log_dir}\n\n  Ctrl-C stops everything.\n")
        raise click.ClickException(stack.wait())  # only when a server's restart budget is spent
    except KeyboardInterrupt:
        click.echo("\nstopping ...")
    finally:
        stack.stop()


@main.command("simulate")
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with a question/instruction/text column and a topic/intent/label column.")
@click.option("--n", "count", default=100, show_default=True, type=click.IntRange(1, 1_000_000),
              help="How many questions to ask.")
@click.option("--noise", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Probability that a simulated rating is flipped.")
@click.option("--split", default=None, help="Only rows whose split column equals this (e.g. train).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--rasa-url", default=None, help="Rasa server (default: from rsft.yml's server section).")
@click.pass_context
@_fail_cleanly
def simulate_command(ctx: click.Context, dataset: Path, count: int, noise: float, split: str | None, seed: int,
                     concurrency: int, rasa_url: str | None) -> None:
    """Replay labelled questions through the running bot over REST and rate each answer from its label.

    👍 when the answering topic equals the label, 👎 otherwise, flipped with probability --noise. After a 👎 that
    asks "Was it one of these?", the answer of the label's topic is clicked when offered, "None of these" otherwise.

    Example: rsft simulate --dataset data/golden.csv --split train --n 360 --noise 0.2
    """
    from .simulate import read_labelled, simulate

    config = _config(ctx)
    url = rasa_url or f"http://{config.server.host}:{config.server.rasa_port}"
    result = simulate(read_labelled(dataset, split), count, noise, url, _parts(ctx).log, seed, concurrency)
    handled_by_rasa = result.asked - result.answered - result.not_understood - result.failed
    click.echo(f"asked {result.asked}: {result.answered} answered by the response model, {result.not_understood} "
               f"not understood (below model.min_score), {handled_by_rasa} by Rasa's own intents (greet, handoff, "
               f"...), {result.failed} failed; served accuracy "
               f"{result.served_accuracy:.1%}; ratings 👍 {result.rated_up} / 👎 {result.rated_down} "
               f"({result.flipped} flipped by noise); \"Was it one of these?\" asked {result.choices_offered} times: "
               f"{result.picked} right answers picked, {result.none_of_these} \"None of these\"; served within one "
               f"click {result.served_within_one_click:.1%}")


@main.command("forget")
@click.argument("sender")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@_fail_cleanly
def forget_command(ctx: click.Context, sender: str, yes: bool) -> None:
    """Delete a customer's turns, ratings and hand-offs with their email (Rasa sender id), and remove them from every
    future training set.

    Example: rsft forget 3f2a9c61-sender-id --yes
    """
    from .maintenance import forget_sender

    if not yes:
        click.confirm(f"Delete every turn, rating, signal and hand-off of {sender!r}?", abort=True)
    removed = forget_sender(_parts(ctx).log, sender)
    click.echo(f"deleted {removed['turns']} turns, {removed['ratings']} ratings, {removed['signals']} signals and "
               f"{removed['handoffs']} hand-offs of {sender!r}; "
               f"{removed['round_prompts']} recorded round prompts were theirs alone and went too")


@main.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@_fail_cleanly
def backup_command(ctx: click.Context, path: Path) -> None:
    """Copy the plugin's log to PATH (a new file); safe while the bot is running.

    SQLite: a database file made with SQLite's online backup API. PostgreSQL (log.url): pg_dump's custom format,
    restored with `pg_restore --dbname=URL PATH`.

    Example: rsft backup backups/rsft-2026-11-29.db
    """
    from .maintenance import backup_log

    try:
        counts = backup_log(_parts(ctx).log, path)
    except OSError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"backed up to {path}: " + ", ".join(f"{n} {table}" for table, n in counts.items()))


@main.command("retention")
@click.pass_context
@_fail_cleanly
def retention_command(ctx: click.Context) -> None:
    """Redact personal data from raw text older than privacy.retention_days now (the worker does it too).

    Example: rsft retention
    """
    from .maintenance import apply_retention

    parts = _parts(ctx)
    click.echo(f"redacted {apply_retention(parts)} turns older than {parts.config.privacy.retention_days:g} days")


@main.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--rasa-url", required=True, help="Where the page sends messages (Rasa's REST channel).")
@click.pass_context
def web_command(ctx: click.Context, host: str, port: int, rasa_url: str) -> None:
    """Serve the chat page and the operator API (`rsft serve` starts it for you).

    Example: rsft web --port 8000 --rasa-url http://127.0.0.1:5005
    """
    from .webapp import serve

    serve(_config(ctx), host, port, rasa_url)


@main.command("config")
@click.pass_context
@_fail_cleanly
def config_command(ctx: click.Context) -> None:
    """The settings in force — rsft.yml (or defaults), then every --set — as YAML, with the file they came from.

    Example: rsft --set reject.beta=0.5 config
    """
    from .config import settings_as_yaml

    config = _config(ctx)
    click.echo(f"# from {config.source or 'defaults (no config file)'}")
    click.echo(settings_as_yaml(config), nl=False)
