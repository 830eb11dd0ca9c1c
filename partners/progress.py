"""Progress bars for long management commands: drawn on a terminal, silent anywhere else.

The bar (rich's) goes to the command's stderr, and only when that stream is a terminal, so
the command's stdout, what scripts and people's pipes read, never carries a byte of it, and
a command run by cron, CI or a pipe prints exactly what it printed before. The work drives
the bar: commands advance it per referral, invoice, ledger batch or key as each is done,
through the ``progress`` callbacks of the domain functions (which know nothing of rich).

Lines a command writes to stdout while its bar is on screen are held until the bar is
finished (:meth:`CommandProgress.echo`): a bar redraws itself by moving the cursor over the
lines it drew, so text written under it by another stream would be overwritten.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, OutputWrapper
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _raw(stream: OutputWrapper | TextIO) -> TextIO:
    # Django's OutputWrapper appends a newline to every write; rich writes partial lines.
    return cast(TextIO, stream._out) if isinstance(stream, OutputWrapper) else stream


def on_terminal(stream: OutputWrapper | TextIO) -> bool:
    isatty = getattr(_raw(stream), "isatty", None)
    return bool(isatty is not None and isatty())


class CommandProgress:
    """One task's bar (or nothing, off a terminal): ``advance`` as work is done, ``update``
    when the work reports its own count, ``echo`` for stdout lines meanwhile."""

    def __init__(self, progress: Progress, task: TaskID, *, shown: bool) -> None:
        self._progress = progress
        self._task = task
        self.shown = shown
        self._held: list[tuple[OutputWrapper, str]] = []

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def update(
        self, *, completed: int, total: int | None = None, description: str | None = None
    ) -> None:
        changes: dict[str, Any] = {"completed": completed}
        if total is not None:
            changes["total"] = total
        if description is not None:
            changes["description"] = description
        self._progress.update(self._task, **changes)

    def echo(self, out: OutputWrapper, text: str) -> None:
        """Write ``text`` to ``out`` now, or once the bar is done when one is drawn."""
        if self.shown:
            self._held.append((out, text))
        else:
            out.write(text)

    def _release(self) -> None:
        for out, text in self._held:
            out.write(text)
        self._held.clear()


@contextmanager
def progress_bar(
    command: BaseCommand,
    *,
    description: str,
    total: int | None = None,
    verbosity: int = 1,
) -> Iterator[CommandProgress]:
    """A bar on ``command``'s stderr while the block runs, when stderr is a terminal and
    the verbosity is not 0. ``total`` None: a spinner and a count until it is known."""
    shown = verbosity > 0 and on_terminal(command.stderr)
    console = Console(file=_raw(command.stderr), force_terminal=True) if shown else None
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not shown,
        # stdout stays the command's own; stray stderr writes print above the bar.
        redirect_stdout=False,
        redirect_stderr=True,
    )
    bar = CommandProgress(progress, progress.add_task(description, total=total), shown=shown)
    try:
        with progress:
            yield bar
    finally:
        bar._release()
