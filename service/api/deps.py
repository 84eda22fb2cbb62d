"""``Annotated`` dependencies shared by the routers: the service context and the caller."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.auth import Principal, authenticate
from service.context import ServiceContext

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (when auth is enabled).")
_bearer = HTTPBearer(auto_error=False, description="API key as a Bearer token (when auth is enabled).")


def get_ctx(request: Request) -> ServiceContext:
    return request.app.state.ctx


CtxDep = Annotated[ServiceContext, Depends(get_ctx)]


async def current_principal(
    ctx: CtxDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller: 401 problem when auth is enabled and the key is missing, unknown or revoked."""
    key = api_key or (bearer.credentials if bearer is not None else None)
    if not ctx.settings.auth_enabled:
        return authenticate(ctx.store, enabled=False, api_key=None)
    return await anyio.to_thread.run_sync(lambda: authenticate(ctx.store, enabled=True, api_key=key))


PrincipalDep = Annotated[Principal, Depends(current_principal)]

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=255,
    description="Makes resubmission safe: the same key with the same request returns the original "
                "(200); with a different request, 409 idempotency_conflict.")]
