"""The driver and assembly modules stay readable: no function over ~80 lines or ~8 parameters.

A second front-end (the studio) calls the same functions as the CLI; long functions and long
parameter lists are where it would have to copy logic instead. Options travel as objects
(``StitchOptions``, ``TakeJob``, ``LoadedSpec``); ``**kwargs`` counts as one parameter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "storyengine"
MODULES = ["render.py", "shots.py", "stitch.py", "episode.py"]
MAX_LINES = 80
MAX_PARAMS = 8


def _functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            params = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
            params += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1, params


@pytest.mark.parametrize("module", MODULES)
def test_no_long_functions_or_parameter_lists(module):
    too_long = [f"{module}:{line} {name}() is {n} lines" for name, line, n, _ in _functions(ROOT / module) if n > MAX_LINES]
    too_wide = [f"{module}:{line} {name}() takes {len(p)} parameters ({', '.join(p)})"
                for name, line, _, p in _functions(ROOT / module) if len(p) > MAX_PARAMS]
    assert not too_long + too_wide, "\n".join(too_long + too_wide)
