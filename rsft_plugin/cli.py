"""The `rsft` command line: a thin layer over the library. Each command loads the config, calls the library, and
turns library errors into one clear message."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .config import Config, load_config
from .errors import RsftError


def _fail_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RsftError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _config(ctx: click.Context) -> Config:
    return ctx.obj["config"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="rsft.yml to use (default: $RSFT_CONFIG or ./rsft.yml).")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None) -> None:
    """rsft: a Rasa customer-service assistant that retrains itself from rated conversations.

    Example: rsft eval --split heldout
    """
    try:
        ctx.obj = {"config": load_config(config_path)}
    except RsftError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("init-model")
@click.option("--force", is_flag=True, help="Make a fresh pretrained version live even if one is live already.")
@click.pass_context
@_fail_cleanly
def init_model(ctx: click.Context, force: bool) -> None:
    """Create the first model version from the pretrained encoder and make it live.

    Does nothing when a live version exists (unless --force).

    Example: rsft init-model
    """
    from .versions import create_initial_version

    info, created = create_initial_version(_config(ctx), force=force)
    if created:
        click.echo(f"created {info.name} (pretrained, held-out accuracy {info.eval.get('heldout_accuracy', 0):.1%})"
                   f" and made it live")
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

    report = evaluate_version(_config(ctx), version_name, None if split == "all" else split)
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
    from .store import Store

    store = Store(_config(ctx).paths.db)
    try:
        turns = store.recent_turns(limit, sender)
    finally:
        store.close()
    if not turns:
        click.echo("no turns logged yet")
        return
    click.echo(f"{'time (UTC)':<19}  {'sender':<12}  {'question':<40}  {'answer':<22}  score  version  rating")
    for turn in turns:
        rating = {1: "👍", 0: "👎"}.get(turn["rating"], "-")
        question = " ".join(turn["user_text"].split())
        click.echo(f"{turn['created_at'][:19]:<19}  {turn['sender_id'][:12]:<12}  {_clip(question, 40):<40}  "
                   f"{turn['answer_id'][:22]:<22}  {turn['score']:.2f}   {turn['model_version']:<7}  {rating}")


@main.command("versions")
@click.pass_context
@_fail_cleanly
def versions_command(ctx: click.Context) -> None:
    """Model versions, oldest first, with lineage and held-out accuracy; `*` marks the live one.

    Example: rsft versions
    """
    from .registry import Registry

    registry = Registry(_config(ctx).paths.models_dir)
    live = registry.live_name()
    infos = registry.versions()
    if not infos:
        click.echo("no model versions yet; run `rsft init-model`")
        return
    click.echo("   version  created (UTC)        parent   round  held-out  notes")
    for info in infos:
        accuracy = info.eval.get("heldout_accuracy")
        click.echo(f"{'*' if info.name == live else ' '}  {info.name:<7}  {info.created_at[:19]:<19}  "
                   f"{info.parent or '-':<7}  {info.round_id if info.round_id is not None else '-':>5}  "
                   f"{f'{accuracy:.1%}' if accuracy is not None else '-':>8}  {info.notes}")


@main.command("serve")
@click.pass_context
@_fail_cleanly
def serve_command(ctx: click.Context) -> None:
    """Start Rasa, the action server and the chat page; Ctrl-C stops all of them (this is `make run`).

    Trains the Rasa model first when bot/ changed, and creates the first model version when there is none.

    Example: rsft serve
    """
    from .launcher import Stack
    from .versions import create_initial_version

    config = _config(ctx)
    create_initial_version(config)
    stack = Stack(config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` stops the servers like Ctrl-C does
    try:
        stack.start()
        click.echo(f"\n  Chat with the assistant:  {stack.web_url}\n"
                   f"  Rasa REST channel:        {stack.rasa_url}/webhooks/rest/webhook\n"
                   f"  Plugin log (SQLite):      {config.paths.db}\n"
                   f"  Server logs:              {stack.log_dir}\n\n  Ctrl-C stops everything.\n")
        exited = stack.wait()
        raise click.ClickException(f"{exited} stopped unexpectedly; see {stack.log_dir / (exited + '.log')}")
    except KeyboardInterrupt:
        click.echo("\nstopping ...")
    finally:
        stack.stop()


@main.command("web")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--rasa-url", required=True, help="Where the page sends messages (Rasa's REST channel).")
def web_command(host: str, port: int, rasa_url: str) -> None:
    """Serve only the chat page (`rsft serve` starts it for you).

    Example: rsft web --port 8000 --rasa-url http://127.0.0.1:5005
    """
    from .webapp import serve

    serve(host, port, rasa_url)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


if __name__ == "__main__":
    main()
