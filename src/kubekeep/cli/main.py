"""Entry point: the ``kubekeep`` group, its verbs, and the error boundary.

Exit codes (docs/cli.md): 0 success; 1 unexpected failure; 2 usage error; 3 backup finished but
some source data could not be read; 10 repository error or not found; 11 repository locked;
12 wrong password; 13 integrity error (corruption found); 14 snapshot or path not found;
15 storage error; 16 connector error; 17 source unreachable; 18 a restore drill failed;
130 interrupted.
"""

from __future__ import annotations

import importlib
import sys

from kubekeep import process

process.tune()  # before numpy is imported (by the command modules below)

import click  # noqa: E402

from kubekeep import __version__, errors  # noqa: E402
from kubekeep.cli._common import global_options  # noqa: E402
from kubekeep.cli.terminal import safe  # noqa: E402

COMMANDS = [
    "init",
    "backup",
    "snapshots",
    "ls",
    "cat",
    "diff",
    "restore",
    "drill",
    "drills",
    "check",
    "forget",
    "prune",
    "key",
    "copy",
    "unlock",
    "locks",
    "etcd",
    "summary",
    "ui",
    "agent",
    "cleanup",
    "repair",
    "metrics",
]


class _LazyGroup(click.Group):
    """Imports a verb's module only when that verb runs (or help lists them all): a command
    pays for its own libraries only, not for the web UI's or the cluster client's."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(f"kubekeep.cli.{cmd_name}_cmd").command
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kubekeep")
@global_options
def cli() -> None:
    """Back up Kubernetes clusters (etcd, manifests, volumes) and local directories into a
    deduplicated, encrypted snapshot repository, and restore them whole or piece by piece."""


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="kubekeep", standalone_mode=False)
    except errors.KubekeepError as exc:
        click.secho(f"error: {safe(exc)}", err=True, fg="red")
        for line in exc.details:
            click.echo(f"  {safe(line)}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
    except SystemExit:
        raise


if __name__ == "__main__":
    main()
