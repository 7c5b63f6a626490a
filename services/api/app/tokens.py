"""Mint a token signed with CHAT_AUTH_SECRET, for development and tests.

    python -m app.tokens --subject demo [--ttl 86400] [--scope chat:stream]

Production tokens come from your identity provider (CHAT_AUTH_JWKS_URL).
"""

import argparse
import time

import jwt

from app.config import Settings, get_settings


def mint(settings: Settings, subject: str, *, ttl: float = 3600, scope: str | None = None) -> str:
    if settings.auth_secret is None:
        raise SystemExit("CHAT_AUTH_SECRET is not set: tokens come from the identity provider")
    now = int(time.time())
    claims = {
        "sub": subject,
        "iss": settings.auth_issuer,
        "aud": settings.auth_audience,
        "scope": settings.auth_scope if scope is None else scope,
        "iat": now,
        "exp": now + int(ttl),
    }
    return jwt.encode(claims, settings.auth_secret.get_secret_value(), algorithm="HS256")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app.tokens", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subject", default="demo")
    parser.add_argument("--ttl", type=float, default=86400, help="seconds until it expires")
    parser.add_argument("--scope", default=None, help="space-separated scopes (default: CHAT_AUTH_SCOPE)")
    args = parser.parse_args()
    print(mint(get_settings(), args.subject, ttl=args.ttl, scope=args.scope))


if __name__ == "__main__":
    main()
