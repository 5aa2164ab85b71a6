"""The app state the lifespan yields, and the dependency aliases the routes declare.

`AppState` is what `service.app`'s lifespan opens (settings, ranker, cache, user states);
handlers never touch ``request.state`` themselves but declare ``StateDep``, ``UsersDep`` or
``RankerDep`` (FastAPI ``Annotated`` aliases), and the key-protected route depends on
`require_api_key`. Tests override these like any FastAPI dependency.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from service.cache import UserCache
from service.ranker import Ranker
from service.settings import Settings
from service.users import UserStates


@dataclass
class AppState:
    """What the lifespan opens and yields; handlers reach it through the dependencies.

    Not frozen: a model swap (`service.swap`) replaces ``ranker``, ``cache`` and ``users``
    together in one step of the event loop. A handler reads ``users`` once (its dependency),
    so one request is served by one model.
    """

    settings: Settings
    ranker: Ranker
    cache: UserCache
    users: UserStates


async def _app_state(request: Request) -> AppState:
    # async: a plain `def` dependency would cost a thread-pool hop per request.
    state: AppState = request.state.segint
    return state


StateDep = Annotated[AppState, Depends(_app_state)]


async def _users(state: StateDep) -> UserStates:
    return state.users


async def _ranker(state: StateDep) -> Ranker:
    return state.ranker


UsersDep = Annotated[UserStates, Depends(_users)]
RankerDep = Annotated[Ranker, Depends(_ranker)]
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(
    state: StateDep, key: Annotated[str | None, Depends(_api_key_header)]
) -> None:
    """401 unless the configured API key (if any) came in the X-API-Key header."""
    expected = state.settings.api_key
    if expected is None:
        return
    if key is None or not hmac.compare_digest(key.encode(), expected.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong X-API-Key header",
            headers={"WWW-Authenticate": "ApiKey"},
        )
