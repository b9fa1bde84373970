"""RDS IAM database authentication: a token from generate_db_auth_token for the loader and
for dbt, replaced before it expires (tokens are signed locally: moto's endpoint suffices)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from loader import credentials
from loader.aws import rds
from loader.config import dbt_environment, load_settings

HOST = "dw.abc123.eu-west-1.rds.amazonaws.com"


def iam_settings(tmp_path):
    return load_settings({
        "ELT_HOME": str(tmp_path),
        "ELT_WAREHOUSE_URL": f"postgresql://etl_iam@{HOST}:5432/dw?sslmode=verify-full",
        "ELT_WAREHOUSE_IAM_AUTH": "1",
    })


def test_the_loader_and_dbt_get_a_token_refreshed_before_it_expires(aws, tmp_path,
                                                                    monkeypatch):
    s = iam_settings(tmp_path)
    assert credentials.managed(s.warehouse) and s.warehouse.password == ""
    clock = [1000.0]
    monkeypatch.setattr(rds.time, "monotonic", lambda: clock[0])
    calls = []
    real = rds.client

    def counting(service):
        calls.append(service)
        return real(service)

    monkeypatch.setattr(rds, "client", counting)
    live = credentials.live(s.warehouse)
    token = urlsplit("https://" + live.password)
    assert token.hostname == HOST and token.port == 5432
    signed = parse_qs(token.query)
    assert signed["Action"] == ["connect"] and signed["DBUser"] == ["etl_iam"]
    assert "X-Amz-Signature" in signed
    assert live.param("sslmode") == "verify-full"  # RDS wants TLS for IAM sign-in
    # dbt gets the same token, in its scrubbed secret variable, never in a file
    env = dbt_environment(s, live)
    assert env["DBT_ENV_SECRET_ELT_WAREHOUSE_PASSWORD"] == live.password
    assert env["ELT_WAREHOUSE_SSLMODE"] == "verify-full"
    # reused while young, replaced after TOKEN_REFRESH_S (tokens live 15 minutes)
    clock[0] += rds.TOKEN_REFRESH_S - 1
    assert credentials.live(s.warehouse).password == live.password
    assert calls == ["rds"]
    clock[0] += 2
    credentials.live(s.warehouse)
    assert calls == ["rds", "rds"]
    # a refused token is replaced at once
    credentials.forget(s.warehouse)
    credentials.live(s.warehouse)
    assert calls == ["rds", "rds", "rds"]
    assert live.password in credentials.passwords_seen()  # the run log redacts it
