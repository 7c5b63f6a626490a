"""Bearer tokens: who is asking, and may they stream.

A token is a JWT with ``sub``, ``exp``, ``iss`` and ``aud``, and a ``scope``
claim (space-separated) that includes ``CHAT_AUTH_SCOPE``. Claims must have
the types the RFCs give them, or the token is invalid: ``sub`` a non-empty
string, ``exp``/``nbf``/``iat`` JSON numbers (RFC 7519's NumericDate; PyJWT
also takes numeric strings), ``scope`` one string of scope tokens separated
by single spaces (RFC 8693 section 4.2, RFC 6749 section 3.3). The algorithms are
pinned by the key type: HS256 with a shared secret, RS256/ES256 with a JWKS
URL. ``alg: none`` and algorithm confusion (an HS256 token signed with a
public key) are refused because the accepted list never mixes the two.

The HTTP API reads ``Authorization: Bearer <token>``. Browsers cannot set
headers on a WebSocket, so the WebSocket takes the token as a subprotocol,
``bearer.<token>``, never in the URL (URLs end up in logs).
"""

import math
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from app.config import Settings
from app.errors import ApiError

WEBSOCKET_PROTOCOL = "chat.v1"
TOKEN_PROTOCOL_PREFIX = "bearer."
REALM = 'Bearer realm="chat"'


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    expires_at: float  # seconds since the epoch

    def seconds_left(self) -> float:
        return self.expires_at - time.time()


class AuthError(ApiError):
    def __init__(self, status_code: int, code: str, message: str, challenge: str) -> None:
        super().__init__(status_code, code, message, headers={"WWW-Authenticate": challenge})


def _invalid(message: str) -> AuthError:
    return AuthError(401, "invalid_token", message, f'{REALM}, error="invalid_token"')


# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), joined by single spaces.
_SCOPE_TOKEN = r"[\x21\x23-\x5b\x5d-\x7e]+"
_SCOPE = re.compile(rf"{_SCOPE_TOKEN}(?: {_SCOPE_TOKEN})*")


def _numeric_date(value: object) -> bool:
    """RFC 7519's NumericDate: a JSON number (not a string, not a boolean)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _well_formed(claims: dict[str, Any]) -> bool:
    """Whether the claims PyJWT accepted have the types the RFCs allow.

    PyJWT reads exp/nbf/iat with int(), so "exp": "9999999999" (a string) and
    "nbf": true pass; it takes any string as sub, "" included; and it does not
    look at scope, where a list such as ["a chat:stream"] would, once turned
    into a string, seem to carry the scope. None of those is a token an
    identity provider issues: they are refused, not interpreted.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return False
    if not all(_numeric_date(claims[name]) for name in ("exp", "nbf", "iat") if name in claims):
        return False
    scope = claims.get("scope", "")
    return isinstance(scope, str) and (scope == "" or _SCOPE.fullmatch(scope) is not None)


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._issuer = settings.auth_issuer
        self._audience = settings.auth_audience
        self._scope = settings.auth_scope
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True) if settings.auth_jwks_url else None
        self._secret = settings.auth_secret.get_secret_value() if settings.auth_secret else None
        self._algorithms = ["RS256", "ES256"] if self._jwks else ["HS256"]

    def verify(self, token: str) -> Principal:
        try:
            key = self._jwks.get_signing_key_from_jwt(token).key if self._jwks else str(self._secret)
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise _invalid("The token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise _invalid("The token is not valid.") from exc
        if not _well_formed(claims):
            raise _invalid("The token is not valid.")
        scopes = frozenset(claims.get("scope", "").split(" ")) - {""}
        if self._scope not in scopes:
            raise AuthError(
                403,
                "insufficient_scope",
                f"The token lacks the {self._scope} scope.",
                f'{REALM}, error="insufficient_scope", scope="{self._scope}"',
            )
        return Principal(subject=str(claims["sub"]), scopes=scopes, expires_at=float(claims["exp"]))


def get_authenticator(connection: HTTPConnection) -> Authenticator:
    authenticator: Authenticator = connection.app.state.authenticator
    return authenticator


# Declares the scheme in the OpenAPI document; the checks are ours (a missing
# or non-Bearer header gets our 401, not FastAPI's).
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT with sub, exp, iss, aud and the chat:stream scope.",
)


def bearer_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)]) -> str:
    if credentials is None or not credentials.credentials.strip():
        raise AuthError(401, "missing_token", "Send Authorization: Bearer <token>.", REALM)
    return credentials.credentials.strip()


def websocket_token(connection: HTTPConnection) -> str | None:
    for protocol in connection.scope.get("subprotocols", []):
        if protocol.startswith(TOKEN_PROTOCOL_PREFIX):
            return str(protocol[len(TOKEN_PROTOCOL_PREFIX) :])
    return None
