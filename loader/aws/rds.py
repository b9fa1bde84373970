"""RDS credentials: a Secrets Manager secret in the RDS format, and IAM database tokens."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

from loader.aws import AwsUnavailable, client
from loader.config import Endpoint

# an IAM token is valid 15 minutes; one older than this is replaced before it is used
TOKEN_REFRESH_S = 10 * 60

_LOCK = threading.Lock()
_SECRETS: dict[str, dict] = {}
_TOKENS: dict[tuple[str, int, str], tuple[str, float]] = {}


def read_secret(secret_id: str) -> dict:
    """The secret's JSON ({"username", "password", "host", "port", "dbname", "engine"})."""
    with _LOCK:
        cached = _SECRETS.get(secret_id)
    if cached is not None:
        return cached
    try:
        value = client("secretsmanager").get_secret_value(SecretId=secret_id)
        secret = json.loads(value["SecretString"])
    except (ValueError, KeyError, TypeError):
        raise AwsUnavailable(
            f"the secret {secret_id} is not JSON in the RDS format "
            '({"username", "password", "host", "port", "dbname"})'
        ) from None
    except Exception as exc:  # botocore errors: name the secret, never its value
        raise AwsUnavailable(
            f"cannot read the secret {secret_id} from Secrets Manager: {exc}. Check "
            "ELT_*_SECRET_ID, the region and secretsmanager:GetSecretValue on it"
        ) from None
    if not isinstance(secret, dict) or "password" not in secret:
        raise AwsUnavailable(f"the secret {secret_id} has no password field (RDS format)")
    with _LOCK:
        _SECRETS[secret_id] = secret
    return secret


def iam_token(endpoint: Endpoint) -> str:
    """An RDS IAM authentication token for the endpoint, reused until TOKEN_REFRESH_S."""
    key = (endpoint.host, endpoint.port, endpoint.user)
    now = time.monotonic()
    with _LOCK:
        cached = _TOKENS.get(key)
    if cached is not None and now - cached[1] < TOKEN_REFRESH_S:
        return cached[0]
    rds = client("rds")
    token = rds.generate_db_auth_token(
        DBHostname=endpoint.host, Port=endpoint.port, DBUsername=endpoint.user
    )
    with _LOCK:
        _TOKENS[key] = (token, now)
    return token


def live_endpoint(endpoint: Endpoint) -> Endpoint:
    """The endpoint with its secret applied (the URL's location wins when it has one) and,
    with IAM authentication, a current token as its password."""
    if endpoint.secret_id:
        secret = read_secret(endpoint.secret_id)
        located = bool(endpoint.host)
        endpoint = replace(
            endpoint,
            host=endpoint.host if located else str(secret.get("host", "")),
            port=endpoint.port if located else int(secret.get("port") or 5432),
            database=endpoint.database or str(secret.get("dbname", "")),
            user=str(secret.get("username") or endpoint.user),
            password=str(secret["password"]),
        )
        if not endpoint.host or not endpoint.database:
            raise AwsUnavailable(
                f"the secret {endpoint.secret_id} names no host or dbname: add them to it, "
                "or give ELT_*_URL"
            )
    if endpoint.iam_auth:
        endpoint = replace(endpoint, password=iam_token(endpoint))
    return endpoint


def forget(endpoint: Endpoint) -> None:
    with _LOCK:
        _SECRETS.pop(endpoint.secret_id, None)
        if endpoint.iam_auth:
            for key in [k for k in _TOKENS if k[0] == endpoint.host]:
                del _TOKENS[key]
