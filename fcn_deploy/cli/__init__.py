"""The ``fcn-deploy`` command line: thin typer commands over path-in -> path-out library functions.

Only this package catches FcnDeployError; it prints ``error: ...`` with the fix and exits with the
error's code (1 bad usage or input, 2 missing component, 3 some inputs of a batch failed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import typer

from fcn_deploy import __version__
from fcn_deploy.cli.commands import register_all
from fcn_deploy.errors import FcnDeployError, InputError, Interrupted, printable
from fcn_deploy.interrupts import signals_interrupt
from fcn_deploy.progress import NORMAL, QUIET, VERBOSE, set_verbosity


@dataclass
class _Settings:
    verbose: bool = False


settings = _Settings()

app = typer.Typer(
    name="fcn-deploy",
    help="Train, export, quantise, build and run FCN segmentation models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fcn-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    context: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Every detail: each image's line, long lists, "
                                 "tracebacks on errors."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (the exit code tells the rest)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Train, export, quantise, build and run FCN segmentation models."""
    if verbose and quiet:
        raise InputError("--verbose and --quiet both given", "pass one of them")
    settings.verbose = verbose
    set_verbosity(VERBOSE if verbose else QUIET if quiet else NORMAL)
    if quiet:  # the command's results on stdout go nowhere until it returns; errors still reach stderr
        context.with_resource(_stdout_to_nowhere())


@contextlib.contextmanager
def _stdout_to_nowhere() -> Iterator[None]:
    with open(os.devnull, "w", encoding="utf-8") as nowhere, contextlib.redirect_stdout(nowhere):
        yield


def _fail(message: str, hint: str | None, code: int, details: tuple[str, ...] = ()) -> int:
    """Print ``error:``, the detail lines and ``fix:`` with control characters escaped; return ``code``.

    Messages carry paths and names a user chose: escaped, a file name holding a newline cannot forge a line.
    """
    typer.echo(f"error: {printable(message)}", err=True)
    for line in details:
        typer.echo(f"  {printable(line)}", err=True)
    if hint:
        typer.echo(f"  fix: {printable(hint)}", err=True)
    return code


def _is_usage_error(exc: Exception) -> bool:
    """Typer (and the click it wraps) signal bad command lines with exceptions that can format themselves."""
    return hasattr(exc, "format_message") and hasattr(exc, "exit_code")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` and return the exit code (used by ``main`` and by tests)."""
    command = typer.main.get_command(app)
    try:
        with signals_interrupt(signal.SIGINT) as noticed:
            result = command.main(args=argv, prog_name="fcn-deploy", standalone_mode=False)
        if noticed and result == 130:  # typer turned a Ctrl-C into a silent exit code
            typer.echo("interrupted", err=True)
    except Interrupted as exc:  # the command saved what it had done; say so, not as an error
        typer.echo(printable(exc.message), err=True)
        if exc.hint:
            typer.echo(f"  note: {printable(exc.hint)}", err=True)
        return exc.exit_code
    except FcnDeployError as exc:
        if settings.verbose:
            traceback.print_exc()
        return _fail(exc.message, exc.hint, exc.exit_code, exc.details)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        context = getattr(exc, "ctx", None)
        usage = " ".join(context.get_usage().split()) if context else None  # one line, however click wrapped it
        return _fail(exc.format_message(), usage, 1)
    finally:
        settings.verbose = False
        set_verbosity(NORMAL)
    return result if isinstance(result, int) else 0


register_all(app)


def main() -> None:
    """Console-script entry point."""
    sys.exit(run())
