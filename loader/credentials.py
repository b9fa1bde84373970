"""Credentials at connection time: the URL's password, an AWS Secrets Manager secret or an RDS
IAM token (loader/aws/rds.py, imported only when one is configured); after an authentication
failure a secret is read again, so a rotated password is picked up by the next attempt."""

from __future__ import annotations

import threading
from typing import Any

import psycopg2

from loader.config import Endpoint

# what the server says when it refuses the password or token (psycopg2 gives no SQLSTATE for
# a refused connection, only the server's message)
AUTH_FAILURES = (
    "password authentication failed",
    "pam authentication failed",
    "iam authentication failed",
    "no password supplied",
)

_SEEN: set[str] = set()  # every password handed out, for the run log to redact
_SEEN_LOCK = threading.Lock()


def managed(endpoint: Endpoint) -> bool:
    """True when the credentials come from AWS rather than from the URL or the environment."""
    return bool(endpoint.secret_id or endpoint.iam_auth)


def live(endpoint: Endpoint) -> Endpoint:
    """`endpoint` with the credentials to use now (secret or fresh IAM token filled in)."""
    if not managed(endpoint):
        return endpoint
    from loader.aws import rds

    resolved = rds.live_endpoint(endpoint)
    with _SEEN_LOCK:
        _SEEN.add(resolved.password)
    return resolved


def forget(endpoint: Endpoint) -> None:
    """Drop the cached secret or token of `endpoint`: the next `live` reads it again."""
    if managed(endpoint):
        from loader.aws import rds

        rds.forget(endpoint)


def passwords_seen() -> list[str]:
    """The passwords and tokens `live` handed out in this process (never print them)."""
    with _SEEN_LOCK:
        return [p for p in _SEEN if p]


def is_auth_failure(exc: BaseException) -> bool:
    code = getattr(exc, "pgcode", None)
    if code in ("28P01", "28000"):
        return True
    message = str(exc).lower()
    return any(m in message for m in AUTH_FAILURES)


def connect(endpoint: Endpoint, **kwargs: Any) -> psycopg2.extensions.connection:
    """psycopg2.connect with the live credentials; a managed endpoint whose password was
    refused reads its secret (or a new token) again and tries once more."""
    try:
        return psycopg2.connect(live(endpoint).dsn, **kwargs)
    except psycopg2.OperationalError as exc:
        if not (managed(endpoint) and is_auth_failure(exc)):
            raise
    forget(endpoint)  # outside the except: the retry's error does not chain the first
    return psycopg2.connect(live(endpoint).dsn, **kwargs)
