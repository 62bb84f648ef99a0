"""Character cards: a character declared in YAML (``characters/<handle>.yaml``) that `character add --from` registers.

A card names the character and where its photos come from: a file (relative to the card) or an image
that ships inside an installed package (``skimage:astronaut``, ``skimage:chelsea``,
``matplotlib:grace_hopper.jpg``), optionally cropped, mirrored and relit, so a card needs no committed
photo. The repository's ``characters/mara.yaml`` and ``characters/chelsea.yaml`` are the demo's two
characters; a test keeps them equal to what ``storyengine demo`` registers.

```yaml
handle: mara
name: Mara
kind: person                  # person | pet | object | drawn
description: A commuter on the morning line.
consent: public-domain portrait (NASA); demo use only
licence: public domain
photos:
  - source: skimage:astronaut
    crop: [40, 0, 440, 300]   # x0, y0, x1, y1 in pixels (x1, y1 exclusive)
  - {source: skimage:astronaut, crop: [40, 0, 440, 300], flip: true}
  - {source: skimage:astronaut, crop: [70, 10, 410, 290], gain: 0.85, offset: 18}
  - source: photos/mara-at-the-window.jpg    # a file beside the card
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import SpecError, UnsafePathError
from .workspace import check_handle

PACKAGE_IMAGES = ("skimage:astronaut", "skimage:chelsea", "skimage:coffee", "matplotlib:grace_hopper.jpg")


class PhotoSource(BaseModel):
    """One photo of a card: where it comes from and how it is derived (applied in this order)."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="A file relative to the card, or a package image such as skimage:astronaut.")
    crop: Optional[tuple[int, int, int, int]] = Field(None, description="x0, y0, x1, y1 in pixels (x1, y1 exclusive).")
    flip: bool = Field(False, description="Mirror left to right.")
    tint: Optional[tuple[float, float, float]] = Field(None, description="Per-channel factors (R, G, B).")
    gain: float = Field(1.0, gt=0, description="Brightness factor.")
    offset: float = Field(0.0, description="Added to every channel after the gain (0-255 scale).")

    @field_validator("crop")
    @classmethod
    def _ordered(cls, v):
        if v is not None and not (0 <= v[0] < v[2] and 0 <= v[1] < v[3]):
            raise ValueError(f"crop {list(v)} must be x0, y0, x1, y1 with 0 <= x0 < x1 and 0 <= y0 < y1")
        return v


class CharacterCard(BaseModel):
    model_config = ConfigDict(extra="forbid")
    handle: str
    name: str = ""
    kind: Literal["person", "pet", "object", "drawn"] = "person"  # register.KINDS (tests/test_errors_matrix.py keeps them equal)
    description: str = ""
    consent: str = ""
    licence: str = ""
    photos: list[PhotoSource] = Field(min_length=1, max_length=7)

    @field_validator("handle")
    @classmethod
    def _handle(cls, v: str) -> str:
        try:
            return check_handle(v)
        except UnsafePathError as e:  # as a ValueError pydantic reports it with the card's line
            raise ValueError(str(e)) from None


def load_card(path: str | Path) -> CharacterCard:
    """Parse and validate a card; errors name the file, the line and the field."""
    from .planner import _node_at

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"character card not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data, root = yaml.safe_load(text), yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise SpecError(f"{path}: YAML syntax error at line {mark.line + 1 if mark else '?'}: "
                        f"{getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a character card must be a mapping with `handle:` and `photos:`, got {type(data).__name__}")
    try:
        return CharacterCard.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = tuple(err["loc"])
            node = _node_at(root, loc)
            value = err.get("input")
            shown = f" (got {value!r})" if not isinstance(value, (dict, list)) and err["type"] != "missing" else ""
            lines.append(f"{path}:{node.start_mark.line + 1 if node is not None else '?'}: "
                         f"{'.'.join(str(p) for p in loc) or '(top level)'}: {err['msg']}{shown}")
        raise SpecError("invalid character card:\n  " + "\n  ".join(lines)) from None


def source_image(source: str, base: Path) -> np.ndarray:
    """The RGB pixels of a photo source: a package image, or a file relative to ``base``."""
    if source.startswith("skimage:"):
        from skimage import data

        name = source.split(":", 1)[1]
        if f"skimage:{name}" not in PACKAGE_IMAGES:
            raise SpecError(f"unknown package image {source!r}; available: {', '.join(PACKAGE_IMAGES)}")
        return np.asarray(getattr(data, name)())[..., :3]
    if source.startswith("matplotlib:"):
        from matplotlib import cbook
        from PIL import Image

        if source not in PACKAGE_IMAGES:
            raise SpecError(f"unknown package image {source!r}; available: {', '.join(PACKAGE_IMAGES)}")
        with Image.open(cbook.get_sample_data(source.split(":", 1)[1], asfileobj=False)) as im:
            return np.asarray(im.convert("RGB")).copy()
    from PIL import Image, UnidentifiedImageError

    p = (base / source).resolve()
    if not p.is_file():
        raise SpecError(f"photo not found: {p} (source {source!r} of the card in {base})")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError) as e:
        raise SpecError(f"{p}: not a readable image ({e})") from None


def derive(image: np.ndarray, ph: PhotoSource, where: str = "photo") -> np.ndarray:
    """Apply a photo source's crop, flip and light to ``image`` (uint8 RGB)."""
    out = image
    if ph.crop is not None:
        x0, y0, x1, y1 = ph.crop
        h, w = image.shape[:2]
        if x1 > w or y1 > h:
            raise SpecError(f"{where}: crop {list(ph.crop)} reaches outside the {w}x{h} image")
        out = out[y0:y1, x0:x1]
    if ph.flip:
        out = out[:, ::-1]
    if ph.tint is not None or ph.gain != 1.0 or ph.offset:
        y = out.astype(np.float32)
        if ph.tint is not None:
            y = y * np.array(ph.tint)
        if ph.gain != 1.0:
            y = y * ph.gain
        if ph.offset:
            y = y + ph.offset
        out = np.clip(y, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out)


def card_images(card: CharacterCard, card_path: str | Path) -> list[np.ndarray]:
    """The card's photos as pixels, in order."""
    base = Path(card_path).resolve().parent
    return [derive(source_image(ph.source, base), ph, f"{card_path}: photos.{i}") for i, ph in enumerate(card.photos)]


def write_card_photos(card: CharacterCard, card_path: str | Path, out_dir: Path) -> list[Path]:
    """Write the card's photos as ``<handle>-<n>.png`` under ``out_dir`` (the registry stores that name)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, rgb in enumerate(card_images(card, card_path), 1):
        p = out_dir / f"{card.handle}-{i}.png"
        Image.fromarray(rgb).save(p, format="PNG")
        paths.append(p)
    return paths
