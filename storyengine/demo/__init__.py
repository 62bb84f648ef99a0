"""The subway-diary demo, kept apart from the engine: ``build`` prepares the workspace (characters,
stills, spec) and ``stills`` draws the carriage and composites the characters into it."""

from .build import (FRAMINGS, IMPOSTOR_SHOT, PROMPTS, SERIES, WEEKDAYS, build_demo, register_demo_characters,
                    write_motion_strips, write_stills_and_spec)

__all__ = ["FRAMINGS", "IMPOSTOR_SHOT", "PROMPTS", "SERIES", "WEEKDAYS", "build_demo", "register_demo_characters",
           "write_motion_strips", "write_stills_and_spec"]
