"""The ``thinslice`` command line: a thin shell over the Python API, one file per command.

Heavy imports (torch, SimpleITK) happen inside the commands so ``--help`` is instant.
Every :class:`~thinslice.errors.ThinsliceError` becomes one line on stderr and exit
code 2 (with the traceback only under ``-v``); SIGINT and SIGTERM become
:class:`~thinslice.errors.Interrupted`, so partial files are removed and the trainer saves
its checkpoint, then one line saying what was kept and exit code 130 or 143. This is the
one place that mapping lives.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Annotated

import typer

from thinslice import __version__
from thinslice.cli import options
from thinslice.cli.demo import demo
from thinslice.cli.evaluate import evaluate
from thinslice.cli.info import info
from thinslice.cli.train import train
from thinslice.cli.upsample import upsample
from thinslice.errors import Interrupted, ThinsliceError

app = typer.Typer(
    add_completion=False,
    rich_markup_mode="markdown",  # paragraphs rewrapped to the terminal, not broken at the source lines
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Thick-slice to thin-slice CT by self-supervised cross-view mutual distillation.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"thinslice {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: options.Verbose = 0,
    quiet: options.Quiet = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    options.configure(verbose, quiet)


for command in (upsample, evaluate, train, info, demo):
    app.command()(command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; map thinslice errors to exit code 2 and signals to 128 + N."""
    options.reset()
    try:
        with _signals_raise():
            code = app(args=argv, standalone_mode=False, prog_name="thinslice")
    except ThinsliceError as err:
        if options.verbose():
            logging.getLogger("thinslice").exception("error")
        typer.echo("error: " + " ".join(str(err).split()), err=True)  # always one line
        return err.exit_code
    except Interrupted as err:
        kept = err.kept or "no output was written (partial files removed)"
        typer.echo(f"interrupted by {err.name}; kept: {kept}", err=True)
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted by SIGINT; kept: no output was written (partial files removed)", err=True)
        return 130
    except Exception as err:  # usage errors from the CLI parser (Typer's bundled click): one line too
        message = getattr(err, "format_message", None)
        if callable(message) and isinstance(getattr(err, "exit_code", None), int):
            ctx, text = getattr(err, "ctx", None), " ".join(str(message()).split()).rstrip(".")
            see = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
            if text:  # no text: the help was shown (no arguments at all)
                typer.echo(f"error: {text}{see}", err=True)
            return int(err.exit_code)  # type: ignore[attr-defined]
        raise
    if isinstance(code, int) and code == 130:  # Typer turns a stray KeyboardInterrupt into Exit(130)
        typer.echo("interrupted by SIGINT; kept: no output was written (partial files removed)", err=True)
    return code if isinstance(code, int) else 0


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` while the command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
