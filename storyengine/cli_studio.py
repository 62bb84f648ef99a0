"""`storyengine studio`: serve the creator's studio (a local web app) over a workspace."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Optional

import typer

from .cli import WorkspaceOpt, _fail, _ws, app, console
from .errors import StoryEngineError


@app.command("studio")
def studio_cmd(workspace: Path = WorkspaceOpt,
               port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
               host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (any non-local one needs a token)."),
               token: Optional[str] = typer.Option(None, "--token", envvar="STORYENGINE_STUDIO_TOKEN",
                                                   help="Access token every request must carry (generated when binding a non-local host).")) -> None:
    """Serve the studio: characters, series and shots, renders with live progress, takes side by side, episodes.

    Binds 127.0.0.1 unless --host says otherwise; a non-local host needs --token (one is generated
    and printed when it is not given). Stop it with Ctrl+C.
    """
    from .studio.app import create_app
    from .studio.security import is_local

    try:
        import uvicorn
    except ImportError:
        _fail(StoryEngineError("the studio needs uvicorn and starlette: pip install 'storyengine[studio]'"))
    if not is_local(host) and not token:
        token = secrets.token_urlsafe(18)
    try:
        ws = _ws(workspace)
        asgi = create_app(ws.root, host=host, port=port, token=token)
    except StoryEngineError as e:
        _fail(e)
    import socket

    shown = "localhost" if host in ("127.0.0.1", "::1") else socket.gethostname() if host in ("0.0.0.0", "::") else host
    url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/" + (f"?token={token}" if token else "")
    console.print(f"storyengine studio on {url}  (workspace {ws.root}; Ctrl+C stops it)", highlight=False, soft_wrap=True)
    uvicorn.run(asgi, host=host, port=port, log_level="warning")
