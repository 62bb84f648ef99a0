"""Named errors. Only ``storyengine.cli`` turns them into messages and exit codes."""


class StoryEngineError(Exception):
    """Base class: the user sees ``str(error)`` and exit code 1."""


class SpecError(StoryEngineError):
    """A series spec is malformed; the message names the file, the field path and the line."""


class RegistryError(StoryEngineError):
    """The character registry cannot do what was asked (unknown handle, clash, bad migration)."""


class PhotoRejected(StoryEngineError):
    """A photo failed a registration gate; the message names the file, the gate and the value."""


class UnsafePathError(StoryEngineError):
    """A handle or path would escape the workspace."""


class EncoderError(StoryEngineError):
    """An identity encoder is unknown, missing its weights, or cannot embed an image."""


class BackendError(StoryEngineError):
    """A video back-end is unknown, cannot load its model, or was given options it cannot honour."""


class MediaError(StoryEngineError):
    """Reading or writing media failed (ffmpeg's own message is quoted)."""


class WorkspaceBusy(StoryEngineError):
    """Another render holds the workspace lock; the message names its pid and command."""


class OutputError(StoryEngineError):
    """An output file cannot be written (disk full, unwritable folder); the message names the path."""


class ConsentError(StoryEngineError):
    """``require_consent`` is on and a `person` character has no consent note; the message names the
    character and the command that adds one."""


class Interrupted(StoryEngineError):
    """A render stopped by Ctrl-C or SIGTERM: its run is marked ``interrupted``; re-running resumes it."""
