"""The ``nslab`` command line: one click group; each verb group lives in its own module.

Owns the conversion of the error tree into what a person sees: one line per problem on stderr, exit 2 for
user mistakes (bad lab file, unknown host, conflicts), 1 for runtime failures, never a traceback for
either. Heavy imports (pydantic, yaml, rich) happen inside the commands that need them. The common
``nslab exec`` form does not get here at all (see :mod:`nslab.cli.fast_exec`).
"""

from __future__ import annotations

import importlib

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


#: The verb groups, in the order ``nslab --help`` lists them; each module's ``register`` adds its commands.
VERB_MODULES = ("labs", "targets", "services", "hosts", "network", "containers", "faults", "debug", "inspect",
                "ops", "engine")
for _module in VERB_MODULES:
    importlib.import_module(f"{__package__}.{_module}").register(cli)


def main(argv: list[str] | None = None) -> int:
    try:
        code = cli.main(args=argv, prog_name="nslab", standalone_mode=False)
        if isinstance(code, int):  # a command's ctx.exit(N) / click.exceptions.Exit(N)
            return code
    except NslabError as exc:
        for line in exc.lines():
            click.echo(f"nslab: {line}", err=True)
        return exc.exit_code
    except click.exceptions.Abort as exc:
        from .plain import Terminated

        cause = exc.__cause__ or exc.__context__  # click turns Ctrl-C (and our SIGTERM/SIGHUP) into Abort
        if isinstance(cause, Terminated):
            click.echo(f"nslab: stopped by signal {cause.signum}", err=True)
            return 128 + cause.signum
        click.echo("nslab: aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt as exc:
        from .plain import Terminated

        return 128 + exc.signum if isinstance(exc, Terminated) else 130
    return 0

