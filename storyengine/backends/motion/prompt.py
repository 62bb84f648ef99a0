"""Reading a shot's prompt as motion: a small, documented vocabulary, parsed deterministically.

The prompt is lower-cased and cut into *steps* at sentence ends and at "then" / "after that" /
"finally"; actions inside one step happen together, steps follow each other. Each step is read
word by word against the vocabulary below; words that name nothing in it are reported as ignored
(function words such as "she", "the", "her" are skipped silently).

Vocabulary (docs/motion.md lists it with examples):

- camera: static (locked, locked-off, tripod, still camera), push in (push, zoom in, dolly in, move in),
  pull out (pull back, zoom out, dolly out), pan [left|right], tilt [up|down], orbit [left|right]
  (arc), handheld;
- subject: blink, glance / look left|right|up|down, turn (her/his) head [left|right], tilts her head
  (a roll), nod, smile, relax (the mouth), breathe / a breath, sway, shift (her) weight / weight shift,
  look at the camera (lens, us);
- timing and size: slowly, quickly, once / twice / three times / N times, then, at the end, at the
  start, slightly / a little / the smallest (half size), deeply / wide (larger);
- light: light passes (a passing light, lights pass), flicker, dims (darkens), brightens;
- negation: "no", "not", "without", "never", "doesn't" before an action drops it.

Directions are as seen in the frame: "turns her head to the left" moves the face toward the frame's
left edge. Contradictions are not errors; they are resolved by a fixed rule and reported:
two camera moves → the first one named is kept ("static camera, push in" stays static); a second
direction for the same camera move → the first is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

CAMERA_MOVES = ("static", "push_in", "pull_out", "pan", "tilt", "orbit", "handheld")
FACE_ACTIONS = ("blink", "glance", "look", "turn", "roll", "nod", "smile", "relax", "look_camera")
BODY_ACTIONS = ("breathe", "sway", "shift")
LIGHT_ACTIONS = ("light_pass", "flicker", "dim", "brighten")

# inflected forms → lemma (only words the vocabulary uses)
_LEMMA = {
    "blinks": "blink", "blinking": "blink", "blinked": "blink",
    "glances": "glance", "glancing": "glance", "glanced": "glance",
    "looks": "look", "looking": "look", "looked": "look", "gazes": "look", "gaze": "look", "gazing": "look",
    "turns": "turn", "turning": "turn", "turned": "turn",
    "nods": "nod", "nodding": "nod", "nodded": "nod",
    "smiles": "smile", "smiling": "smile", "smiled": "smile", "grins": "smile", "grin": "smile",
    "relaxes": "relax", "relaxing": "relax", "relaxed": "relax", "softens": "relax",
    "breath": "breathe", "breathes": "breathe", "breathing": "breathe", "breaths": "breathe", "inhales": "breathe",
    "inhale": "breathe", "sighs": "breathe", "sigh": "breathe",
    "sways": "sway", "swaying": "sway", "swayed": "sway", "rocks": "sway",
    "shifts": "shift", "shifting": "shift", "shifted": "shift",
    "pushes": "push", "pushing": "push", "zooms": "zoom", "zooming": "zoom", "dollies": "dolly", "dollying": "dolly",
    "pulls": "pull", "pulling": "pull", "pans": "pan", "panning": "pan", "tilts": "tilt", "tilting": "tilt",
    "tilted": "tilt", "orbits": "orbit", "orbiting": "orbit", "arcs": "arc", "arcing": "arc", "moves": "move",
    "hand-held": "handheld", "locked-off": "locked", "lock": "locked",
    "passes": "pass", "passing": "pass", "passed": "pass", "sweeps": "pass", "sweep": "pass", "sweeping": "pass",
    "flickers": "flicker", "flickering": "flicker", "flickered": "flicker",
    "dims": "dim", "dimming": "dim", "darkens": "dim", "darken": "dim", "darkening": "dim",
    "brightens": "brighten", "brightening": "brighten", "lights": "light",
    "slow": "slowly", "gently": "slowly", "softly": "slowly", "quick": "quickly", "fast": "quickly",
    "suddenly": "quickly", "briefly": "quickly", "deep": "deeply", "big": "deeply", "broadly": "deeply",
    "slight": "slightly", "small": "slightly", "smallest": "slightly", "tiny": "slightly", "subtle": "slightly",
    "subtly": "slightly",
}
_COUNTS = {"once": 1, "twice": 2, "thrice": 3, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
_DIRS = ("left", "right", "up", "down")
_NEG = {"no", "not", "without", "never", "doesn't", "don't", "dont", "doesnt", "nor"}
# words that carry no motion of their own and are never reported as ignored
_FUNCTION = set("""
a an the she he they it its her his their them him i we you us our your one's someone
is are was be being been am has have had do does did
to of and or but while as with at on in into onto toward towards from by for over under across through
around about up down this that these those there here so very more most much some any all each both
then after afterwards finally first last end start beginning again back once twice times time
camera lens shot frame view head eyes eye mouth lips face shoulders chest weight body gaze
little bit slightly gently softly slowly quickly deeply wide just still side sides direction
""".split())


@dataclass
class Action:
    """One thing the prompt asked for; ``step`` orders the steps, ``at`` pins it ("end" / "start")."""

    kind: str
    direction: str = ""
    count: int = 0  # 0: not given ("blinks" → a natural cadence)
    speed: str = ""  # "slow" | "quick" | ""
    size: float = 1.0  # 0.5 for "slightly", 1.5 for "deeply"
    step: int = 0
    at: str = ""
    words: str = ""

    def label(self) -> str:
        out = {"look_camera": "look at the camera", "light_pass": "light passes", "roll": "tilt head",
               "turn": "turn head", "shift": "shift weight"}.get(self.kind, self.kind)
        if self.direction:
            out += f" {self.direction}"
        if self.count:
            out += {1: " once", 2: " twice"}.get(self.count, f" {self.count} times")
        if self.speed:
            out += f" ({self.speed})"
        if self.size != 1.0:
            out += " (small)" if self.size < 1 else " (large)"
        if self.at:
            out += f" at the {self.at}"
        return out


@dataclass
class Reading:
    """What a prompt was read as: the camera, the actions in order, and what was ignored or resolved."""

    prompt: str
    camera: str = "auto"  # "auto": nothing asked, the seed draws a gentle push / pull and pan
    camera_direction: str = ""
    camera_speed: str = ""
    handheld: bool = False
    actions: list[Action] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    negated: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def has(self, kind: str) -> bool:
        return any(a.kind == kind for a in self.actions)

    @property
    def steps(self) -> int:
        return 1 + max((a.step for a in self.actions), default=0)

    def camera_label(self) -> str:
        if self.camera == "auto":
            return "camera: the seed's (a gentle push or pull, pan)" + (" + handheld" if self.handheld else "")
        name = {"push_in": "push in", "pull_out": "pull out"}.get(self.camera, self.camera)
        if self.camera_direction:
            name += f" {self.camera_direction}"
        if self.camera_speed:
            name += f" ({self.camera_speed})"
        if self.handheld and self.camera != "handheld":
            name += " + handheld"
        return f"camera: {name}"

    def summary(self) -> str:
        """One line: the camera, then the actions by step (``→`` between steps)."""
        steps: dict[int, list[str]] = {}
        for a in self.actions:
            steps.setdefault(a.step, []).append(a.label())
        acts = " → ".join(", ".join(v) for _, v in sorted(steps.items()))
        return self.camera_label() + (f"; {acts}" if acts else "")


_STEP_SPLIT = re.compile(r"(?:[.;!?]+\s*|\bthen\b|\bafter that\b|\bafterwards\b|\bfinally\b|\bnext\b)")


def _tokens(text: str) -> list[str]:
    """Words, with "," kept as a token (it bounds a clause's modifiers)."""
    return re.findall(r"[a-z0-9]+(?:['-][a-z]+)?|,|:", text.lower().replace("’", "'"))


def read_prompt(prompt: str) -> Reading:
    """Parse ``prompt`` into a :class:`Reading` (pure, deterministic, never raises on words)."""
    r = Reading(prompt=prompt)
    text = (prompt or "").lower()
    # "at the end" / "finally" pin actions to the end of the shot; mark them before splitting on "finally"
    raw_steps = [s for s in _STEP_SPLIT.split(text.replace("finally", "finally at the end"))]
    step = 0
    for raw in raw_steps:
        toks = _tokens(raw)
        if not toks:
            continue
        before = len(r.actions)
        _read_step(toks, r, step)
        if any(a.kind not in LIGHT_ACTIONS for a in r.actions[before:]):
            step += 1
    # keep the order of ignored words, once each
    seen: set[str] = set()
    r.ignored = [w for w in r.ignored if not (w in seen or seen.add(w))]
    return r


def _set_camera(r: Reading, move: str, direction: str, speed: str, words: str) -> None:
    if move == "handheld":
        if r.camera == "static":
            r.resolved.append(f"{words!r} conflicts with the static camera named first: kept static")
            return
        r.handheld = True
        if r.camera == "auto":
            r.camera = "handheld"
        return
    if r.camera not in ("auto", "handheld"):
        if r.camera == move and (not direction or not r.camera_direction or direction == r.camera_direction):
            r.camera_direction = r.camera_direction or direction
            return
        kept = r.camera_label().removeprefix("camera: ")
        r.resolved.append(f"{words!r} conflicts with {kept!r} named first: kept {kept!r}")
        return
    if move == "static" and r.handheld:
        r.resolved.append(f"{words!r} conflicts with 'handheld' named first: kept handheld")
        return
    r.camera, r.camera_direction, r.camera_speed = move, direction, speed


def _read_step(toks: list[str], r: Reading, step: int) -> None:
    lem = [_LEMMA.get(t, t) for t in toks]
    used = [False] * len(toks)
    n = len(toks)

    def find(i: int, words, span: int = 4) -> int:
        for j in range(i + 1, min(n, i + 1 + span)):
            if lem[j] in words and not used[j]:
                return j
        return -1

    def mark(*idx: int) -> None:
        for j in idx:
            if 0 <= j < n:
                used[j] = True

    # modifiers hold for their clause (words between commas): "slowly turns …, nods at the end"
    clause, c = [], 0
    for t in toks:
        c += t in (",", ":")
        clause.append(c)
    mods: dict[int, dict] = {}
    for k in set(clause):
        cl = [j for j in range(n) if clause[j] == k]
        cw = [lem[j] for j in cl]
        m = {"speed": "slow" if "slowly" in cw else ("quick" if "quickly" in cw else ""),
             "size": 0.5 if "slightly" in cw else (1.5 if "deeply" in cw else 1.0), "at": ""}
        for a, b in zip(cl, cl[1:]):
            if lem[a] == "the" and lem[b] in ("end", "start", "beginning"):
                m["at"] = "start" if lem[b] != "end" else "end"
                mark(a, b)
        if cw and cw[0] == "first":
            m["at"] = m["at"] or "start"
        mods[k] = m
    for j, w in enumerate(lem):
        if w in ("slowly", "quickly", "slightly", "deeply", ",", ":"):
            mark(j)
    speed = ""  # camera moves read the clause's speed below

    def negated(i: int) -> bool:
        return any(lem[j] in _NEG for j in range(max(0, i - 3), i))

    def add(kind: str, i: int, direction: str = "", count: int = 0, extra: tuple[int, ...] = ()) -> None:
        words = " ".join(toks[min((i, *extra)) if extra else i: (max((i, *extra)) if extra else i) + 1])
        mark(i, *extra)
        if negated(i):
            r.negated.append(words)
            for j in range(max(0, i - 3), i):
                if lem[j] in _NEG:
                    mark(j)
            return
        m = mods[clause[i]]
        r.actions.append(Action(kind, direction=direction, count=count, speed=m["speed"], size=m["size"], step=step,
                                at=m["at"], words=words))

    i = 0
    while i < n:
        w = lem[i]
        if used[i]:
            i += 1
            continue
        speed = mods[clause[i]]["speed"]
        # -- camera --------------------------------------------------------------------------------------
        if w in ("static", "locked", "tripod", "fixed") or (w == "still" and (find(i, {"camera", "shot", "frame"}, 1) >= 0
                                                                              or (i > 0 and lem[i - 1] in ("camera", "is")))):
            j = find(i, {"camera", "shot", "frame"}, 2)
            mark(i, j)
            _set_camera(r, "static", "", speed, " ".join(toks[i:(j if j > i else i) + 1]))
        elif w in ("push", "zoom", "dolly", "move") and (w != "move" or find(i, {"in"}, 1) >= 0):
            j_in, j_out = find(i, {"in", "closer", "forward"}, 2), find(i, {"out", "back", "away"}, 2)
            if w in ("zoom", "dolly") and j_out >= 0 and (j_in < 0 or j_out < j_in):
                mark(i, j_out)
                _set_camera(r, "pull_out", "", speed, f"{toks[i]} {toks[j_out]}")
            else:
                mark(i, j_in)
                _set_camera(r, "push_in", "", speed, " ".join(toks[i:(j_in if j_in > i else i) + 1]))
        elif w == "pull":
            j = find(i, {"out", "back", "away"}, 2)
            mark(i, j)
            _set_camera(r, "pull_out", "", speed, " ".join(toks[i:(j if j > i else i) + 1]))
        elif w in ("pan", "orbit", "arc"):
            j = find(i, {"left", "right"}, 3)
            mark(i, j)
            _set_camera(r, "pan" if w == "pan" else "orbit", lem[j] if j >= 0 else "", speed,
                        " ".join(toks[i:(j if j > i else i) + 1]))
        elif w == "tilt":
            jh = find(i, {"head", "chin"}, 3)
            if jh >= 0:  # "tilts her head": the subject's roll, not the camera
                j = find(i, {"left", "right"}, 5)
                add("roll", i, lem[j] if j >= 0 else "", extra=(jh,) + ((j,) if j >= 0 else ()))
            else:
                j = find(i, {"up", "down"}, 3)
                mark(i, j)
                _set_camera(r, "tilt", lem[j] if j >= 0 else "", speed, " ".join(toks[i:(j if j > i else i) + 1]))
        elif w in ("handheld", "shaky"):
            mark(i, find(i, {"camera"}, 1))
            _set_camera(r, "handheld", "", speed, toks[i])
        # -- face ----------------------------------------------------------------------------------------
        elif w == "blink":
            count = 0
            for j in list(range(max(0, i - 2), i)) + list(range(i + 1, min(n, i + 4))):
                if lem[j] in _COUNTS or lem[j].isdigit():
                    c = _COUNTS.get(lem[j]) or int(lem[j])
                    # "twice" / "two times" / "three blinks"
                    if lem[j] in ("once", "twice", "thrice") or (j + 1 < n and lem[j + 1] in ("times", "time")) or j < i:
                        count = max(1, min(c, 12))
                        mark(j, j + 1 if j + 1 < n and lem[j + 1] in ("times", "time") else j)
                        break
            add("blink", i, count=count)
        elif w in ("glance", "look", "glimpse", "peek"):
            jc = find(i, {"camera", "lens", "us", "viewer", "audience"}, 4)
            jd = find(i, set(_DIRS), 4)
            if jc >= 0 and (jd < 0 or jc < jd):
                add("look_camera", i, extra=(jc,))
            elif jd >= 0:
                add("glance" if w != "look" else "look", i, lem[jd], extra=(jd,))
            elif w == "glance":
                add("glance", i, "")
            else:
                r.ignored.append(toks[i] + " (no direction)")
                mark(i)
        elif w == "turn":
            jh = find(i, {"head", "face"}, 3)
            jd = find(i, {"left", "right", "away"}, 5)
            if jh >= 0 or jd >= 0:
                d = lem[jd] if jd >= 0 and lem[jd] != "away" else ""
                add("turn", i, d, extra=tuple(j for j in (jh, jd) if j >= 0))
            else:
                r.ignored.append(toks[i])
                mark(i)
        elif w == "nod":
            add("nod", i)
        elif w == "smile":
            add("smile", i)
        elif w == "relax":
            add("relax", i)
        # -- body ----------------------------------------------------------------------------------------
        elif w == "breathe":
            add("breathe", i)
        elif w == "sway":
            j = find(i, {"left", "right"}, 3)
            add("sway", i, lem[j] if j >= 0 else "", extra=((j,) if j >= 0 else ()))
        elif w == "shift" or (w == "weight" and find(i, {"shift"}, 1) >= 0):
            j = find(i, {"weight", "shift"}, 3)
            jd = find(i, {"left", "right"}, 5)
            add("shift", i, lem[jd] if jd >= 0 else "", extra=tuple(x for x in (j, jd) if x >= 0))
        # -- light ---------------------------------------------------------------------------------------
        elif w in ("light", "lamp", "lamps", "lights") and find(i, {"pass", "flicker", "dim", "brighten"}, 3) >= 0:
            j = find(i, {"pass", "flicker", "dim", "brighten"}, 3)
            kind = {"pass": "light_pass"}.get(lem[j], lem[j])
            add(kind, j, extra=(i,))
        elif w in ("flicker", "dim", "brighten"):
            add(w, i)
        elif w == "pass" and i > 0 and lem[i - 1] in ("light", "lights"):
            add("light_pass", i)
        i += 1

    for j, t in enumerate(toks):
        if used[j] or lem[j] in _FUNCTION or lem[j] in _NEG or lem[j] in _DIRS or lem[j] in _COUNTS or t.isdigit() or len(t) < 3 \
                or t in (",", ":"):
            continue
        r.ignored.append(t)
