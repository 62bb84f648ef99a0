"""What every command shares: the output (tables, lines, JSON), error printing, the workspace, help layout.

Command modules import from here and from nothing else in ``storyengine.cli``; ``app.py`` imports the
command modules. Output follows GitHub's ``gh``: in a terminal, tables fit the width by dropping
columns or turning into one block per row, never by cutting a value; when stdout is not a terminal,
rows are tab-separated with full values and no colour, and sentences are never wrapped.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, NoReturn, Optional, Sequence

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from ..errors import StoryEngineError


# ------------------------------------------------------------------ per-invocation state
@dataclass
class State:
    """Set by the root callback (``storyengine -w DIR -q …``) before any command runs."""

    workspace: Optional[Path] = None  # -w before the subcommand (or STORYENGINE_WORKSPACE)
    verbosity: int = 0  # -1 quiet, 0 normal, 1 verbose
    out: Optional[Console] = None
    err: Optional[Console] = None


STATE = State()


def reset(workspace: Optional[Path] = None, verbosity: int = 0) -> None:
    """Fresh consoles for this invocation (COLUMNS, the terminal and the streams are read now)."""
    STATE.workspace = workspace
    STATE.verbosity = verbosity
    STATE.out = None
    STATE.err = None


def out() -> Console:
    """The stdout console (no highlighting: numbers in colour mean nothing here)."""
    if STATE.out is None or STATE.out.file is not sys.stdout:
        STATE.out = Console(highlight=False)
    return STATE.out


def err() -> Console:
    if STATE.err is None or STATE.err.file is not sys.stderr:
        STATE.err = Console(stderr=True, highlight=False)
    return STATE.err


def piped() -> bool:
    """True when stdout is not a terminal: full lines, tabs, no colour, nothing wrapped."""
    return not out().is_terminal


def quiet() -> bool:
    return STATE.verbosity < 0


def verbose() -> bool:
    return STATE.verbosity > 0


# ------------------------------------------------------------------ messages and errors
def wrap(text: str, width: int) -> list[str]:
    """Word-wrap ``text`` to ``width`` keeping its indent; a word longer than the width (a path) stays whole."""
    import textwrap

    lead = text[: len(text) - len(text.lstrip())]
    return [lead + line for line in textwrap.wrap(text.strip(), max(20, width - len(lead)), break_long_words=False,
                                                  break_on_hyphens=False)] or [""]


def say(text: str, *, style: str | None = None, console: Console | None = None) -> None:
    """A summary line on stdout. Piped, it is one line whatever its length; in a terminal it wraps at words
    and never inside a path or a number."""
    c = console or out()
    if not c.is_terminal:
        c.file.write(text + "\n")
        c.file.flush()
        return
    for line in wrap(text, c.width):
        c.print(escape(line), style=style, soft_wrap=True, highlight=False)


def info(text: str) -> None:
    """A line that ``--quiet`` drops (what was written where, counts)."""
    if not quiet():
        say(text)


def warn(text: str, label: str = "warning") -> None:
    """A warning on stderr (kept under ``--quiet``: it says something may be wrong)."""
    err().print(f"[yellow]{label}:[/] {escape(text)}", highlight=False, soft_wrap=True)


def fail(e: Exception | str, code: int = 1) -> NoReturn:
    """Print one ``error:`` line on stderr and exit (1 unless told)."""
    err().print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def emit_json(data: Any) -> None:
    """JSON on stdout, never wrapped or coloured, one document per command."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# ------------------------------------------------------------------ tables
@dataclass
class Col:
    """A table column. ``kind`` ``num``/``id``/``path`` are never cut or wrapped; ``text`` may wrap at words.

    ``drop`` orders the columns a narrow terminal leaves out (1 first, 0: always kept).
    """

    name: str
    kind: str = "id"
    drop: int = 0
    justify: str = "left"

    def __post_init__(self) -> None:
        if self.kind == "num" and self.justify == "left":
            self.justify = "right"


@dataclass
class View:
    """Rows to show: a title, columns, string cells (markup escaped by the caller, or plain)."""

    title: str
    cols: list[Col]
    rows: list[list[str]] = field(default_factory=list)
    styles: list[str | None] = field(default_factory=list)  # per row, terminal only

    def add(self, *cells: Any, style: str | None = None) -> None:
        self.rows.append(["" if c is None else str(c) for c in cells])
        self.styles.append(style)


def _tsv_cell(v: str) -> str:
    return " ".join(v.replace("\t", " ").split("\n"))


def tsv_lines(view: View, header: bool = True) -> list[str]:
    lines = ["\t".join(c.name for c in view.cols)] if header else []
    lines += ["\t".join(_tsv_cell(v) for v in row) for row in view.rows]
    return lines


GAP = 2  # columns between two table columns (SIMPLE_HEAD, no edge, collapsed padding)
TEXT_MIN = 24  # a text column (reasons, notes) is never squeezed below this


def _widths(view: View, keep: list[int], width: int) -> list[int] | None:
    """Exact column widths for ``keep`` within ``width``, or None when they do not fit.

    Numbers, ids and paths get their longest value (never less); text columns share what is left,
    each at least ``TEXT_MIN`` (or its longest value if shorter) and at most its longest value."""
    from rich.cells import cell_len

    natural = [max([cell_len(view.cols[i].name)] + [cell_len(r[i]) for r in view.rows]) for i in keep]
    text = [n for n, i in enumerate(keep) if view.cols[i].kind == "text"]
    out = list(natural)
    avail = width - GAP * (len(keep) - 1) - sum(natural[n] for n in range(len(keep)) if n not in text)
    if not text:
        return out if avail >= 0 else None
    floor = {n: max(cell_len(view.cols[keep[n]].name), min(natural[n], TEXT_MIN)) for n in text}
    if avail < sum(floor.values()):
        return None
    for n in text:
        out[n] = floor[n]
    spare = avail - sum(floor.values())
    while spare > 0:  # widen the text columns that still wrap, one column at a time
        grow = [n for n in text if out[n] < natural[n]]
        if not grow:
            break
        for n in grow:
            if spare == 0:
                break
            out[n] += 1
            spare -= 1
    return out


def _rich_table(view: View, keep: list[int], widths: list[int]) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for i, w in zip(keep, widths):
        c = view.cols[i]
        if c.kind == "text":
            t.add_column(c.name, justify=c.justify, overflow="fold", width=w, min_width=w, max_width=w)
        else:
            t.add_column(c.name, justify=c.justify, no_wrap=True, width=w, min_width=w, max_width=w)  # w fits every value
    for row, style in zip(view.rows, view.styles or [None] * len(view.rows)):
        t.add_row(*(escape(row[i]) for i in keep), style=style)
    return t


def _layout(console: Console, view: View, keep: list[int]) -> Table | None:
    """The table of ``keep`` at this width, or None if a number, id or path would be cut."""
    widths = _widths(view, keep, console.width)
    if widths is None:
        return None
    table = _rich_table(view, keep, widths)
    probe = Console(width=console.width, file=_Null(), record=True, color_system=None, force_terminal=False,
                    highlight=False, legacy_windows=False)
    probe.print(table)
    lines = probe.export_text().splitlines()  # a safety net under the arithmetic: Rich drew it in the width
    return table if all(len(line.rstrip()) <= console.width for line in lines) else None


def blank() -> None:
    """An empty line between blocks (TSV blocks too)."""
    out().file.write("\n")


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None: ...

    def isatty(self) -> bool:
        return False


def _title(console: Console, view: View) -> None:
    """A table's title on its own lines, wrapped at words (never inside a path)."""
    if view.title:
        say(view.title, style="bold", console=console)


def _records(console: Console, view: View) -> None:
    """The narrowest layout: one block per row, ``column: value`` lines; long values run past the edge
    (the terminal wraps them) rather than being cut."""
    _title(console, view)
    width = max((len(c.name) for c in view.cols), default=0)
    for n, row in enumerate(view.rows):
        if n:
            console.print("")
        for c, v in zip(view.cols, row):
            if not v:
                continue
            label = f"  {c.name.rjust(width)}  "
            lines = wrap(v, console.width - len(label)) if c.kind == "text" else [v]  # ids and paths stay whole
            for i, line in enumerate(lines):
                console.print(escape((label if i == 0 else " " * len(label)) + line), highlight=False, soft_wrap=True)


def fits(view: View, console: Console | None = None) -> bool:
    """True when ``view`` fits the terminal with every column and nothing cut (always, when piped)."""
    console = console or out()
    if not console.is_terminal:
        return True
    return _layout(console, view, list(range(len(view.cols)))) is not None


def show(view: View, *, console: Console | None = None, header: bool = True) -> str:
    """Print ``view``: TSV when piped; in a terminal the widest layout that fits, else one block per row.

    Returns the layout used (``tsv``, ``table``, ``narrow``, ``records``), which the tests check.
    """
    console = console or out()
    if not console.is_terminal:
        console.file.write("".join(line + "\n" for line in tsv_lines(view, header=header)))
        console.file.flush()
        return "tsv"
    all_cols = list(range(len(view.cols)))
    levels = sorted({c.drop for c in view.cols if c.drop})
    candidates = [all_cols] + [[i for i in all_cols if not view.cols[i].drop or view.cols[i].drop > lv] for lv in levels]
    for n, keep in enumerate(candidates):
        t = _layout(console, view, keep)
        if t is not None:
            _title(console, view)
            console.print(t)
            console.print("")
            return "table" if n == 0 else "narrow"
    _records(console, view)
    console.print("")
    return "records"


# ------------------------------------------------------------------ workspace
def open_workspace(explicit: Optional[Path] = None, *, spec: Optional[Path] = None,
                   create: bool | Literal["explicit"] = False):
    """The workspace a command works in; raises StoryEngineError for a folder that is not one.

    Order: ``-w`` after the subcommand, ``-w`` before it (or STORYENGINE_WORKSPACE), the folder above a
    spec's ``episodes/`` folder (``W/episodes/x.yaml`` -> ``W``), the current folder. A folder that is
    not a workspace is refused unless ``create`` is True (``character add``, ``demo``) or ``"explicit"`` and
    ``-w`` named it (``render``), so a command run from the wrong folder never leaves a skeleton there.
    """
    from ..workspace import Workspace, is_workspace

    root = explicit or STATE.workspace
    given = root is not None
    if root is None and spec is not None:  # W/episodes/x.yaml or W/episodes/season-1/x.yaml -> W
        root = next((d.parent for d in Path(spec).expanduser().resolve().parents if d.name == "episodes"), None)
    root = Path(root if root is not None else ".")
    ws = Workspace.at(root)
    if ws.root.exists() and not ws.root.is_dir():
        raise StoryEngineError(f"{ws.root} is a file, not a workspace folder; pass -w DIR with a folder")
    if is_workspace(ws.root):
        return ws
    if create is True or (create == "explicit" and given):
        return ws.ensure()
    raise StoryEngineError(
        f"{ws.root} is not a storyengine workspace (no characters/, episodes/ or renders/ folder); "
        f"pass -w DIR, or create one with `storyengine init {root}`")


WorkspaceOpt = typer.Option(None, "--workspace", "-w", metavar="DIR", show_default=False,
                            help="Workspace folder (default: -w before the command, else the current folder).")
SpecWorkspaceOpt = typer.Option(None, "--workspace", "-w", metavar="DIR", show_default=False,
                                help="Workspace folder (default: -w before the command, else the folder holding the "
                                     "spec's episodes/, else the current folder).")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts (fields: docs/cli.md).")


# ------------------------------------------------------------------ progress
class LineReporter:
    """The render Reporter when stderr is not a terminal: one line per finished shot and per stitched
    episode, with the time since the render started, so a CI log shows progress without bars."""

    def __init__(self, console: Console | None = None) -> None:
        self.c = console or err()
        self.t0 = time.monotonic()
        self.totals: dict[str, int] = {}
        self.last: dict[str, int] = {}

    def _line(self, text: str) -> None:
        self.c.print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", markup=False, highlight=False, soft_wrap=True)

    def start(self, key: str, description: str, total: int) -> None:
        self.totals[key] = total
        self.last[key] = 0
        if key == "stitch" or (key.startswith("shot:") and verbose()):
            self._line(description)

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        if key == "series" and description and completed != self.last.get(key):
            self._line(description)
        self.last[key] = completed

    def done(self, key: str) -> None:
        if key == "stitch":
            self._line("stitched")


# ------------------------------------------------------------------ help
_TYPE_METAVARS = {int: "N", float: "NUMBER", str: "TEXT"}


def _range_words(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}"
    return f"at least {lo:g}" if lo is not None else f"at most {hi:g}"


def _tidy_params(params: Sequence[Any]) -> None:
    """Click-style help: ``SPEC``, ``[SERIES]``, ``--wait SECONDS``, ``--mode [full|sampled]``; flags have no
    value; ranges are said in words in the help text instead of ``<float range> [x>=0.0]``."""
    for p in params:
        desc = getattr(p, "type_descriptor", None)
        if isinstance(p, TyperArgument):
            if p.metavar is None:
                p.metavar = p.name.upper()
            p.display_type_rich = lambda ctx: None
            p.get_usage_pieces = (lambda ctx, p=p: [(p.metavar if p.required else f"[{p.metavar}]")
                                                    + ("..." if p.nargs != 1 else "")])
        elif isinstance(p, TyperOption):
            if p.is_flag or getattr(p, "count", False):
                p.metavar = ""
            elif desc is not None and desc.is_choice and p.metavar is None:
                from typer._param_types import choice_as_str

                p.metavar = "[" + "|".join(choice_as_str(c) for c in desc.choices) + "]"
            elif p.metavar is None and desc is not None:
                ann = desc.annotation
                if desc.is_list:
                    ann = (getattr(ann, "__args__", None) or (str,))[0]
                p.metavar = "PATH" if desc.is_path or ann is Path else _TYPE_METAVARS.get(ann, "VALUE")
        else:
            continue
        lo, hi = getattr(p, "min", None), getattr(p, "max", None)
        if (lo is not None or hi is not None) and not getattr(p, "count", False):
            words = _range_words(lo, hi)
            if p.help and words not in p.help:
                h = p.help
                p.help = f"{h[:-2]}; {words})." if h.endswith(").") else f"{h[:-1]} ({words})." if h.endswith(".") \
                    else f"{h} ({words})"
            p._get_number_range_help_str = lambda: None


def _first_line(help: str | None) -> str:
    """The first sentence-line of a help text, whole (click would cut it at 45 characters with '...')."""
    return " ".join((help or "").strip().split("\n\n")[0].split())


class _HelpLayout:
    """What commands and groups share in their help: whole one-line summaries, no metavar on --help."""

    help: str | None
    short_help: str | None

    def get_short_help_str(self, limit: int = 45) -> str:
        return self.short_help or _first_line(self.help)

    def get_help_option(self, ctx: Any) -> Any:
        opt = super().get_help_option(ctx)  # type: ignore[misc]
        if opt is not None:
            opt.metavar = ""
        return opt


class Command(_HelpLayout, TyperCommand):
    """A command whose help reads like a man page: UPPERCASE values, listed choices, an example."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_params(self.params)

    def invoke(self, ctx: Any) -> Any:
        """The last net under every command: a named error, a sqlite error or an OS error (disk full,
        read-only folder, a file where a folder belongs) is one ``error:`` line, never a traceback."""
        try:
            return super().invoke(ctx)
        except StoryEngineError as e:
            fail(e)
        except Exception as e:  # noqa: BLE001 - only the kinds below are translated; the rest propagate
            msg = plain_error(e)
            if msg is None:
                raise
            fail(msg)


def plain_error(e: BaseException) -> str | None:
    """One line for a sqlite or OS error (None for any other exception)."""
    import errno as _errno
    import sqlite3

    if isinstance(e, sqlite3.Error):
        from ..registry import registry_error

        return str(registry_error(e, "(characters/registry.db)"))
    if isinstance(e, OSError):
        where = e.filename or "a file"
        if e.errno in (_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG):
            return f"cannot write {where}: file too large / disk full ({e.strerror}); nothing was kept"
        if e.errno in (_errno.EROFS, _errno.EACCES, _errno.EPERM):
            return f"cannot write {where}: {e.strerror} (the workspace is read-only here?)"
        return f"{where}: {e.strerror or e}"
    return None


class Group(_HelpLayout, TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_params(self.params)


def typer_app(help: str, **kw: Any) -> typer.Typer:
    """A sub-command group with the shared help layout."""
    return typer.Typer(help=help, cls=Group, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_enable=False, rich_markup_mode=None, **kw)


def commands() -> typer.Typer:
    """A name-less Typer whose commands the root app merges in (top-level commands of a module)."""
    return typer.Typer(cls=Group, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def command(t: typer.Typer, name: str, **kw: Any):
    return t.command(name, cls=Command, rich_help_panel=None, **kw)


class RichReporter:
    """Progress bars for the renderer (one for the series, one for the shot at hand)."""

    def __init__(self, progress: Any) -> None:
        self.p = progress
        self.tasks: dict[str, int] = {}

    def start(self, key: str, description: str, total: int) -> None:
        if key in self.tasks:
            self.p.reset(self.tasks[key], total=total, description=description, visible=True)
        else:
            self.tasks[key] = self.p.add_task(description, total=total)

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        if key in self.tasks:
            kw = {"description": description} if description else {}
            self.p.update(self.tasks[key], completed=completed, **kw)

    def done(self, key: str) -> None:
        if key in self.tasks:
            self.p.update(self.tasks[key], visible=False)


class _Silent:
    def start(self, key: str, description: str, total: int) -> None: ...
    def update(self, key: str, completed: int, description: str | None = None) -> None: ...
    def done(self, key: str) -> None: ...


@contextmanager
def progress() -> Iterator[Any]:
    """A render Reporter: bars on a terminal, one line per finished shot when stderr is piped or under
    ``--verbose`` (which adds a line per shot stage), nothing under ``--quiet``. Bars appear with their first task, so a command that fails early prints its error alone."""
    if quiet():
        yield _Silent()
        return
    if verbose() or not err().is_terminal:
        yield LineReporter()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    class _Lazy(Progress):
        def add_task(self, *args, **kwargs):
            if not self.live.is_started:
                self.start()
            return super().add_task(*args, **kwargs)

    p = _Lazy(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
              TimeElapsedColumn(), console=err(), transient=True)
    try:
        yield RichReporter(p)
    finally:
        if p.live.is_started:
            p.stop()
