"""Docs that cannot rot: every CLI command has help with an example, a row in docs/cli.md and an exit-code
row; docs/cli.md holds the current --help of every command; every doc the README links exists."""

import re
import sys
from pathlib import Path

import pytest
import typer

from storyengine.cli import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import cli_docs  # noqa: E402


def _leaves():
    """(name, click command) of every runnable command, groups excluded."""
    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield " ".join(["storyengine", *path]), cmd

    return list(walk(typer.main.get_command(app), []))


def test_every_command_has_help_an_example_and_docs_rows():
    cli_md = (ROOT / "docs" / "cli.md").read_text()
    exit_rows = cli_md.split("## Exit codes", 1)[1].split("## Commands", 1)[0]
    cmds = _leaves()
    assert len(cmds) >= 20
    for name, cmd in cmds:
        assert (cmd.help or "").strip(), f"{name} has no help text"
        example = re.search(r"^Example: (storyengine .+)$", cmd.help, re.M)
        assert example and example.group(1).startswith(name), f"{name}: no one-line example naming the command"
        table = cli_md.split("## Commands", 1)[1].split(cli_docs.BEGIN, 1)[0]
        assert f"`{name}" in table, f"{name} is missing from the commands table"
        noun = " ".join(name.split()[:2])
        assert f"| `{noun}" in exit_rows, f"{noun} has no exit-code row in docs/cli.md"


def test_cli_md_holds_the_current_help():
    doc = (ROOT / "docs" / "cli.md").read_text()
    assert cli_docs.updated(doc) == doc, "docs/cli.md is out of date: run python scripts/cli_docs.py"


@pytest.mark.parametrize("path", cli_docs.command_paths(), ids=lambda p: " ".join(p) or "root")
def test_help_reads_like_a_manual(path):
    """No Python types or click internals in help; choices listed; values named in capitals."""
    text = cli_docs.help_text(path)
    for bad in ("<bool>", "<list[", "<str>", "<int>", "<float", "<path>", "range]", "x>=", "x<=", "{", "Value error"):
        assert bad not in text, (path, bad, text)
    if path == ["render"]:
        assert "--mode [full|sampled]" in text and "--executor [auto|local|process|ray]" in text and "Usage: storyengine render [OPTIONS] SPEC" in text
    if path == ["character", "add"]:
        assert "--kind [person|pet|object|drawn]" in text and "[HANDLE] [PHOTO]..." in text
    if path == ["report"]:
        assert "Usage: storyengine report [OPTIONS] [SERIES]" in text and "-e, --episode ID" in text


def test_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", readme)
    assert len(links) >= 10
    for link in links:
        assert (ROOT / link).is_file(), link


def test_every_command_takes_json():
    """Scripts never scrape tables: every command that reports something has --json (verify's is its manifest)."""
    for name, cmd in _leaves():
        assert "--json" in [o for p in cmd.params for o in getattr(p, "opts", [])], f"{name} has no --json"
