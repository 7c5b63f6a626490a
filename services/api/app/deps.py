"""Dependencies shared by the routes: settings, the caller, the reply store, the token source."""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from app.auth import BEARER_SCHEME, Authenticator, Principal, bearer_token, get_authenticator
from app.config import Settings, get_settings
from app.open_streams import OpenStreams
from app.reply_store import ReplyStore
from app.token_source import TokenSource

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_store(connection: HTTPConnection) -> ReplyStore:
    store: ReplyStore = connection.app.state.replies
    return store


def get_open_streams(connection: HTTPConnection) -> OpenStreams:
    streams: OpenStreams = connection.app.state.streams
    return streams


def get_token_source(connection: HTTPConnection) -> TokenSource:
    # One per process, made with the store (app.main): a model client keeps
    # its connection pool across requests.
    source: TokenSource = connection.app.state.source
    return source


def authenticate(
    connection: HTTPConnection,
    token: Annotated[str, Depends(bearer_token)],
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
) -> Principal:
    """The caller. Declares the bearer scheme in the OpenAPI document; on an
    :class:`AuthenticatedRoute` the token was verified already, before the body."""
    principal = getattr(connection.state, "principal", None)
    return principal if isinstance(principal, Principal) else authenticator.verify(token)


async def _principal_of(request: Request) -> Principal:
    credentials = await BEARER_SCHEME(request)
    return get_authenticator(request).verify(bearer_token(credentials))


class AuthenticatedRoute(APIRoute):
    """A route that checks the token before anything else about the request.

    FastAPI reads and parses the body before it resolves any dependency, and
    runs the router's dependencies (the content type check) before the
    endpoint's, so a request with no token and a malformed body got 400 or
    415 where clients and scanners expect 401: the body of an unauthenticated
    request is nobody's business. The token is verified here, before FastAPI
    handles the request, and the principal is kept for :func:`authenticate`.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def authenticated_first(request: Request) -> Response:
            request.state.principal = await _principal_of(request)
            return await handler(request)

        return authenticated_first


StoreDep = Annotated[ReplyStore, Depends(get_store)]
SourceDep = Annotated[TokenSource, Depends(get_token_source)]
OpenStreamsDep = Annotated[OpenStreams, Depends(get_open_streams)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
