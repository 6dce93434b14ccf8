"""The `rsft` command group and what every command shares: the config (rsft.yml < --set < a command's flags),
the parts built once per command, and library errors turned into one clear message. Commands register on `main`
from cli.py (models and rounds) and cli_ops.py (servers and personal data); rsft_plugin/rasa adds its own."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .config import Config, default_config_path, load_config, parse_overrides
from .config_file import require_file
from .errors import RsftError

if TYPE_CHECKING:
    from .parts import Parts


def _fail_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except RsftError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def _config(ctx: click.Context) -> Config:
    """The command's config; refuses (with the fix) when no rsft.yml was found, so no state lands in a random folder."""
    try:
        return require_file(ctx.obj["config"])
    except RsftError as exc:
        raise click.ClickException(str(exc)) from exc


def _parts(ctx: click.Context, config: Config | None = None) -> Parts:
    """This command's parts, built once (the composition root of a CLI process) and closed when it ends."""
    if ctx.obj.get("parts") is None:
        from .parts import build_parts

        ctx.obj["parts"] = build_parts(config or _config(ctx))
        ctx.call_on_close(ctx.obj["parts"].close)
    return ctx.obj["parts"]


def _echo(lines: list[str]) -> None:
    click.echo("\n".join(lines))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="rsft.yml to use (default: $RSFT_CONFIG or ./rsft.yml).")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one rsft.yml setting for this command, e.g. --set reject.beta=0.5 (repeatable).")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """rsft: a Rasa customer-service assistant that retrains itself from rated conversations.

    Settings come from rsft.yml, then `--set SECTION.KEY=VALUE` (any setting), then a command's own flags.

    Example: rsft --set sample.k=4 --set reject.rule=best_of_n retrain
    """
    try:
        overrides = parse_overrides(assignments)
        ctx.obj = {"config": load_config(config_path, overrides), "config_path": config_path,
                   "overrides": overrides}
    except RsftError as exc:
        raise click.ClickException(str(exc)) from exc
    source = ctx.obj["config"].source
    click.echo(f"rsft: config {source}" if source else f"rsft: config none ({default_config_path()} does not exist)",
               err=True)
