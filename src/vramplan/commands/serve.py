"""vramplan serve [--host 127.0.0.1] [--port 8000]: the web calculator and REST API (needs vramplan[web])."""

from __future__ import annotations

from ..errors import InvalidRequest, VramplanError
from . import checked_number

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LIMIT_CONCURRENCY = 512
"""Connections plus in-flight requests uvicorn serves at once; past it, new ones get a fast 503, not a queue."""


port_number = checked_number("port_number", int, lambda v: 0 <= v <= 65535, "a port number", "a port is 0-65535")


def add_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, this machine only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=port_number, default=8000, help="TCP port (default 8000)")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])


def _need_web():
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise VramplanError(f"the web app needs FastAPI and uvicorn ({exc.name} is not installed): "
                            "pip install 'vramplan[web]'") from None
    return uvicorn


def make_server(host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning"):
    """A configured uvicorn.Server for the app (the tests start the same one in a thread)."""
    uvicorn = _need_web()
    from ..web.app import create_app

    config = uvicorn.Config(create_app(), host=host, port=port, log_level=log_level, access_log=False,
                            limit_concurrency=LIMIT_CONCURRENCY, timeout_keep_alive=5, backlog=2048,
                            server_header=False, proxy_headers=False)
    return uvicorn.Server(config)


def run(args) -> dict:
    import sys

    host = str(args.host).strip()
    if not host:
        raise InvalidRequest("host must not be empty", field="host")
    server = make_server(host, args.port, args.log_level)
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"vramplan {'' if host in LOOPBACK else 'WARNING: listening beyond this machine; '}"
                     f"web calculator on http://{shown}:{args.port}/  (API docs at /docs; Ctrl-C stops)\n")
    server.run()
    return {"host": host, "port": args.port, "stopped": True}


def render(result: dict, args) -> str:
    return ""
