"""Edits to a series spec written back as text: a new shot is inserted after the episode's last shot.

ruamel.yaml is not a dependency, so the edit is a careful insertion located with PyYAML's composed
node tree (line and column of every node): everything else in the file, comments included, stays
byte for byte. The caller validates the new text with :func:`storyengine.planner.load_series`
before it replaces the file.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import SpecError


def _mapping_get(node: yaml.Node, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def _last_end(node: yaml.Node) -> yaml.Mark:
    """Where the last value inside ``node`` ends: block collections end at the next token, scalars where they end."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _last_end(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _last_end(node.value[-1])
    return node.end_mark


def shot_block(shot: dict[str, Any], indent: int) -> list[str]:
    """The shot as block-style YAML lines, ``- `` at column ``indent``."""
    text = yaml.safe_dump(shot, default_flow_style=False, sort_keys=False, allow_unicode=True, width=4096)
    lines = text.rstrip("\n").split("\n")
    pad = " " * indent
    return [pad + ("- " if i == 0 else "  ") + ln for i, ln in enumerate(lines)]


def insert_shot(text: str, episode_id: str, shot: dict[str, Any], where: str = "spec") -> str:
    """``text`` with ``shot`` appended to episode ``episode_id``'s ``shots`` list (comments kept).

    Raises SpecError naming the episode when it is missing or its shots are not a block list.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{where}: cannot edit a spec that does not parse: {e}") from None
    episodes = _mapping_get(root, "episodes") if root is not None else None
    if not isinstance(episodes, yaml.SequenceNode):
        raise SpecError(f"{where}: no `episodes:` list to add a shot to")
    ep = next((e for e in episodes.value if getattr(_mapping_get(e, "id"), "value", None) == episode_id), None)
    if ep is None:
        raise SpecError(f"{where}: no episode with id {episode_id!r}")
    shots = _mapping_get(ep, "shots")
    if not isinstance(shots, yaml.SequenceNode) or not shots.value or shots.flow_style:
        raise SpecError(f"{where}: episode {episode_id!r} has no block list of shots (`shots:` with `- id:` items) "
                        "to add to; edit that episode in the file")
    lines = text.split("\n")
    first = shots.value[0]
    dash_line = lines[first.start_mark.line]
    dash = dash_line.rfind("-", 0, first.start_mark.column + 1)
    if dash < 0:
        raise SpecError(f"{where}: line {first.start_mark.line + 1}: cannot find the `-` of the first shot")
    last = shots.value[-1]
    mark = _last_end(last)  # the end of the last value written in the last shot (not the next token)
    end = mark.line if mark.column == 0 else mark.line + 1
    # step back over blank lines and comments that follow the last shot: they belong to what comes next
    while end - 1 > last.start_mark.line and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    new = lines[:end] + shot_block(shot, dash) + lines[end:]
    out = "\n".join(new)
    return out if out.endswith("\n") else out + "\n"
