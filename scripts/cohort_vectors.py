"""Write the background cohort's crop vectors that the package ships (storyengine/data/cohort/).

The LFW crops of scikit-image take ~10 s of one core to embed with dlib-face; every fresh workspace
would pay that, so the vectors are computed here once, with the code the checker itself uses
(``storyengine.cohort._embed_crops``), and keyed by encoder name + version and the crops' sha256.
Rerun after a change to the encoder or to ``_embed_crops``; tests/test_cohort.py compares a sample.

    .venv/bin/python scripts/cohort_vectors.py
"""

from __future__ import annotations

from storyengine import cohort
from storyengine.plugins import get_encoder
from storyengine.settings import Settings


def main() -> None:
    enc = get_encoder("dlib-face", Settings())
    for s in cohort.BACKGROUND:
        if s.crops:
            print(cohort.write_shipped(enc, s.name))


if __name__ == "__main__":
    main()
