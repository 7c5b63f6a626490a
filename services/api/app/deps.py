"""Dependencies shared by the routes: settings, the caller, the reply store, the token source."""

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from app.auth import Authenticator, Principal, bearer_token, get_authenticator
from app.config import Settings, get_settings
from app.reply_store import ReplyStore
from app.token_source import TokenSource
from app.twin import Twin

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_store(connection: HTTPConnection) -> ReplyStore:
    store: ReplyStore = connection.app.state.replies
    return store


def get_token_source(settings: SettingsDep) -> TokenSource:
    return Twin(
        tokens=settings.twin_reply_tokens,
        delay_seconds=settings.twin_token_delay_seconds,
        test_hooks=settings.twin_test_hooks,
    )


def authenticate(
    token: Annotated[str, Depends(bearer_token)], authenticator: Annotated[Authenticator, Depends(get_authenticator)]
) -> Principal:
    return authenticator.verify(token)


StoreDep = Annotated[ReplyStore, Depends(get_store)]
SourceDep = Annotated[TokenSource, Depends(get_token_source)]
PrincipalDep = Annotated[Principal, Depends(authenticate)]
