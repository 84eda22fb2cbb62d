"""``surfrecon keys create NAME | list | revoke ID``: manage API keys in the job store."""

from __future__ import annotations

import argparse
import sys


def _store(args: argparse.Namespace):
    from service.jobs.db import DatabaseConfig
    from service.jobs.store import JobStore
    from service.settings import Settings

    overrides = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.database_url:
        overrides["database_url"] = args.database_url
    settings = Settings(**overrides)
    store = JobStore(DatabaseConfig(url=settings.database_url, schema=settings.database_schema), pool_size=1)
    store.migrate()
    return store


def cmd_keys(args: argparse.Namespace) -> int:
    from service import auth

    store = _store(args)
    try:
        if args.action == "create":
            row, key = auth.create_key(store, name=args.name)
            print(key)
            print(f"created key {row.id} ({row.name}); it is shown only once", file=sys.stderr)
        elif args.action == "list":
            for k in auth.list_keys(store):
                state = f"revoked {k.revoked_at:%Y-%m-%d}" if k.revoked_at else "active"
                print(f"{k.id}  {k.prefix}…  {k.created_at:%Y-%m-%d %H:%M}  {state:<18} {k.name}")
        elif args.action == "revoke":
            if not auth.revoke_key(store, key_id=args.key_id):
                print(f"error: no single active key with id {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
        return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()


def add_parser(sub) -> None:
    p = sub.add_parser("keys", help="manage API keys (stored hashed in the job store)")
    p.add_argument("--data-dir", default=None, help="as for serve (env SURFRECON_DATA_DIR)")
    p.add_argument("--database-url", default=None, help="job store URL (env SURFRECON_DATABASE_URL)")
    ks = p.add_subparsers(dest="action", required=True)
    c = ks.add_parser("create", help="create a key and print it (once)")
    c.add_argument("name")
    ks.add_parser("list", help="list keys (never the keys themselves)")
    r = ks.add_parser("revoke", help="revoke a key by id")
    r.add_argument("key_id")
    p.set_defaults(func=cmd_keys)
