"""`storyengine studio`: serve the creator's studio (a local web app) over a workspace (docs/studio.md)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Optional

import typer

from ..errors import StoryEngineError
from .common import JsonOpt, WorkspaceOpt, command, commands, emit_json, fail, say

app = commands()


@command(app, "studio")
def studio_cmd(workspace: Optional[Path] = WorkspaceOpt,
               port: int = typer.Option(8765, "--port", min=1, max=65535, metavar="PORT", help="Port to listen on (1 to 65535)."),
               host: str = typer.Option("127.0.0.1", "--host", metavar="ADDRESS",
                                        help="Address to bind; any non-local one needs a token."),
               token: Optional[str] = typer.Option(None, "--token", envvar="STORYENGINE_STUDIO_TOKEN", metavar="TOKEN",
                                                   show_default=False,
                                                   help="Access token every request must carry (generated when a non-local host is given without one)."),
               as_json: bool = JsonOpt) -> None:
    """Serve the studio: characters, series and shots, renders with live progress, takes side by side, episodes.

    Binds 127.0.0.1 unless --host says otherwise; a non-local host needs --token (one is generated
    and printed when it is not given). --json prints the address, token and workspace as one JSON
    document before serving. Runs until Ctrl+C.

    Example: storyengine studio -w demo --port 8765
    """
    from ..studio.app import create_app
    from ..studio.security import is_local
    from .common import open_workspace

    try:
        import uvicorn
    except ImportError:
        fail(StoryEngineError("the studio needs uvicorn and starlette (pip install uvicorn starlette python-multipart)"))
    if not is_local(host) and not token:
        token = secrets.token_urlsafe(18)
    try:
        ws = open_workspace(workspace, create="explicit")
        asgi = create_app(ws.root, host=host, port=port, token=token)
    except StoryEngineError as e:
        fail(e)
    shown = "localhost" if host in ("127.0.0.1", "::1") else socket.gethostname() if host in ("0.0.0.0", "::") else host
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/" + (f"?token={token}" if token else "")
    if as_json:
        emit_json({"url": url, "host": host, "port": port, "token": token, "workspace": str(ws.root)})
    else:
        say(f"storyengine studio on {url}  (workspace {ws.root}; Ctrl+C stops it)")
    uvicorn.run(asgi, host=host, port=port, log_level="warning")
