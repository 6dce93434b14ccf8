"""The `rsft init-rasa` and `rsft doctor` commands (registered on the `rsft` group in cli.py): thin click layers
over bot_files and doctor."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..config_file import require_file
from ..errors import RsftError


@click.command("init-rasa")
@click.argument("bot_dir", default=".", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--channel/--no-channel", default=None,
              help="Name rsft's REST channel (replies with utter_default instead of silence when no action "
                   "answered) in credentials.yml, in place of `rest:`. Asked when not given and run in a terminal.")
@click.option("--move-domain", is_flag=True,
              help="Move a single domain.yml, unchanged, to domain/domain.yml so Rasa can merge rsft's domain file.")
@click.option("--action-url", default="http://127.0.0.1:5055/webhook", show_default=True,
              help="action_endpoint written to endpoints.yml when it has none.")
@click.option("--answers", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The answer bank (YAML) for rsft.yml (default: this checkout's data/answers.yml).")
@click.option("--rasa", "rasa_bin", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The `rasa` executable, for rsft.yml (default: `rasa` on PATH).")
def init_rasa_command(bot_dir: Path, channel: bool | None, move_domain: bool, action_url: str,
                      answers: Path | None, rasa_bin: Path | None) -> None:
    """Add rsft to an existing Rasa 3.6 bot: rsft's intents with training examples, responses, rules, the action
    endpoint, an rsft.yml; optionally the fallback channel. Never rewrites the bot's files; running it again
    changes nothing.

    Example: rsft init-rasa path/to/bot --move-domain --channel
    """
    from . import rasa_pythonpath
    from .bot_files import init_rasa

    if channel is None:
        channel = sys.stdin.isatty() and click.confirm(
            "Use rsft's REST channel (the fallback line instead of silence when the action server is down)?",
            default=True)
    try:
        result = init_rasa(bot_dir, channel=channel, move_domain=move_domain, action_url=action_url,
                           rasa_bin=rasa_bin, answers=answers)
    except RsftError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in result.written:
        click.echo(f"wrote     {path}")
    for path in result.unchanged:
        click.echo(f"unchanged {path}")
    for note in result.notes:
        click.echo(f"note: {note}")
    if not result.changed:
        click.echo("nothing to do: the bot has rsft's files already")
    domain = "domain" if (result.bot_dir / "domain").is_dir() else "domain.yml"
    pythonpath = f"PYTHONPATH={rasa_pythonpath()} " if channel else ""
    click.echo(f"\nnext, in {result.bot_dir}:\n"
               f"  export RSFT_RASA_TOKEN=...    # any long random string; Rasa's HTTP API takes only it\n"
               f"  export RSFT_ACTION_TOKEN=...  # another; Rasa sends it to the action server (endpoints.yml)\n"
               f"  rasa train --domain {domain}\n"
               f"  python -m rsft_plugin.rasa &  # rsft's environment: the bot's actions and rsft's, one process\n"
               f"  {pythonpath}rasa run --enable-api --auth-token=\"$RSFT_RASA_TOKEN\"\n"
               f"  rsft doctor")


@click.command("doctor")
@click.option("--rasa-url", default=None, help="Rasa's HTTP API (default: server.host and rasa_port of rsft.yml).")
@click.option("--token", default=None, help="Rasa's API token (default: $RSFT_RASA_TOKEN).")
@click.option("--question", "questions", multiple=True, help="A customer question to route (repeatable).")
@click.option("--off-topic", "off_topic", multiple=True, help="An off-topic line to route (repeatable).")
@click.pass_context
def doctor_command(ctx: click.Context, rasa_url: str | None, token: str | None, questions: tuple[str, ...],
                   off_topic: tuple[str, ...]) -> None:
    """Check that the bot is wired to rsft: config file, live model, action endpoint and its token, Rasa server and
    its token, and where sample customer questions and off-topic lines go. Exits 1 when a check fails.

    Example: rsft doctor --question "where is my parcel?"
    """
    from ..parts import build_parts
    from .doctor import SAMPLE_OFF_TOPIC, SAMPLE_QUESTIONS, run_checks

    try:
        config = require_file(ctx.obj["config"])
    except RsftError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"PASS  config: {config.source}")
    url = rasa_url or f"http://{config.server.host}:{config.server.rasa_port}"
    with build_parts(config) as parts:
        checks = run_checks(parts, url, token or os.environ.get("RSFT_RASA_TOKEN"),
                            questions or SAMPLE_QUESTIONS, off_topic or SAMPLE_OFF_TOPIC)
    for check in checks:
        click.echo(check.line())
    failed = sum(not check.ok for check in checks)
    click.echo(f"\n{len(checks) + 1 - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


COMMANDS = (init_rasa_command, doctor_command)
