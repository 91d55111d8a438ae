"""The command group every ``allotment`` group uses: one-line errors, plain flags.

Errors are the operator's to fix, not bugs, so none reaches them as a
traceback or a boxed usage screen: each prints one red ``error: …`` line on
stderr naming the field or option, and the exit status says what kind it was:

* 2: bad input (a bad option or value, an unknown id, a refused key);
* 1: the store or the service could not be reached (``StoreError``).

A group called without a subcommand prints its help and exits with 2, as
click does for a missing command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.text import Text
from typer._click.exceptions import (
    BadOptionUsage,
    BadParameter,
    ClickException,
    MissingParameter,
    NoArgsIsHelpError,
    NoSuchOption,
    UsageError,
)
from typer.core import TyperArgument, TyperGroup

from allotment._render import make_console
from allotment.errors import AllotmentError, StoreError

__all__ = ["Group", "fail"]


class Group(TyperGroup):
    """A Typer group whose errors are one line, and whose flags show no ``<bool>``."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        with _one_line_errors():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_errors():
            return super().invoke(ctx)

    def get_params(self, ctx: Any) -> Any:
        return _plain_flags(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_flags(command.get_params(ctx))
        return command


def _plain_flags(params: list[Any]) -> list[Any]:
    """Show ``--json`` as a flag: Typer labels every boolean option ``<bool>``."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` as one red line on stderr and exit with ``code``."""
    line = " ".join(message.split())  # one line, even for YAML parse errors
    make_console(stderr=True).print(Text(f"error: {line}", style="red"), soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:
        raise  # the help screen is the answer
    except UsageError as exc:
        fail(_usage_line(exc), exc.exit_code)
    except ClickException as exc:
        fail(exc.format_message(), exc.exit_code)
    except StoreError as exc:
        fail(str(exc), 1)
    except AllotmentError as exc:
        fail(str(exc), 2)


def _usage_line(exc: UsageError) -> str:
    """``--limit: not a number`` rather than click's usage screen."""
    name: str | None = None
    if isinstance(exc, BadParameter):
        name = _param_name(exc)
        message = "is required" if isinstance(exc, MissingParameter) else exc.message
    elif isinstance(exc, NoSuchOption):
        name, message = exc.option_name, "no such option"
        if exc.possibilities:
            message += f" (did you mean {' or '.join(sorted(exc.possibilities))}?)"
    elif isinstance(exc, BadOptionUsage):
        name = exc.option_name
        message = exc.message.removeprefix(f"Option {name!r} ")
    else:
        message = exc.format_message()
    return f"{name}: {message}" if name else message


def _param_name(exc: BadParameter) -> str | None:
    hint = exc.param_hint
    if hint is not None:
        return hint if isinstance(hint, str) else " / ".join(hint)
    param = exc.param
    if param is None:
        return None
    if isinstance(param, TyperArgument):
        return str(param.display_name_raw)
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])
