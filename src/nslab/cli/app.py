"""The ``nslab`` command line: one click group; each verb group lives in its own module.

Owns the conversion of the error tree into what a person sees: one line per problem on stderr, exit 2 for
user mistakes (bad lab file, unknown host, conflicts), 1 for runtime failures, never a traceback for
either. Heavy imports (pydantic, yaml, rich) happen inside the commands that need them. The common
``nslab exec`` form does not get here at all (see :mod:`nslab.cli.fast`).
"""

from __future__ import annotations

import click

from ..errors import NslabError


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # keep the order verbs were added in, not alphabetical


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nslab")
def cli() -> None:
    """Network namespace labs: declarative, fast, reversible.

    \b
    A lab file (nslab.yaml) names hosts (network namespaces) on bridge networks;
    `nslab up` builds it, `nslab down` removes it, `nslab exec HOST -- CMD` runs
    a command inside a host.
    """


from . import labs, targets  # noqa: E402  (registers the verbs on `cli`)

labs.register(cli)
targets.register(cli)
from . import services  # noqa: E402

services.register(cli)
from . import network  # noqa: E402

network.register(cli)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="nslab", standalone_mode=False)
    except NslabError as exc:
        for line in exc.lines():
            click.echo(f"nslab: {line}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("nslab: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0

