"""``surfrecon serve``: the API on uvicorn with embedded defaults (SQLite, local artifacts, local Ray)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def settings_from_args(args: argparse.Namespace):
    """Settings from the environment with ``--data-dir`` applied; None (after printing why) if invalid.

    Also prepares the environment before Ray is imported: the embedded Ray binds to loopback only.
    """
    from pydantic import ValidationError

    from service.settings import Settings

    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        print(f"error: invalid settings: {e}", file=sys.stderr)
        return None
    if settings.local_ray:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if settings is None:
        return 2
    import uvicorn

    from service.app import create_app

    logging.getLogger("service").setLevel(logging.INFO)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=5, proxy_headers=True)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the HTTP API (jobs run on a local Ray unless RAY_ADDRESS is set)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", default=None,
                   help="all state goes here (env SURFRECON_DATA_DIR; default ./data)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)
