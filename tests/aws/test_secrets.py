"""Credentials from AWS Secrets Manager (RDS format): read at connection time, read again
after a rotation, and written nowhere."""

from __future__ import annotations

import pytest

from loader import credentials
from loader.config import load_settings
from loader.db import connect_raw
from tests.aws.conftest import ROLE, rds_secret, set_password
from tests.conftest import create_database, query


def test_a_rotated_secret_is_read_again_after_the_password_is_refused(
    settings, password_role, boto, tmp_path
):
    create_database(settings, "secret_wh")
    sm = boto("secretsmanager")
    secret_id = sm.create_secret(
        Name="elt/warehouse-rotation",
        SecretString=rds_secret(settings, "secret_wh", "first-Pw-1"),
    )["ARN"]
    set_password(settings, "first-Pw-1")
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_PG_PORT": str(settings.port),
                       "ELT_WAREHOUSE_SECRET_ID": secret_id})
    assert s.warehouse.host == ""  # the location is read from the secret, at connection time
    assert query(s.warehouse, "select current_user, current_database()") == [
        (ROLE, "secret_wh")
    ]
    # rotation: the database and the secret change together, the loader still caches v1
    set_password(settings, "second-Pw-2")
    sm.put_secret_value(SecretId=secret_id,
                        SecretString=rds_secret(settings, "secret_wh", "second-Pw-2"))
    assert credentials.live(s.warehouse).password == "first-Pw-1"
    assert query(s.warehouse, "select current_user") == [(ROLE,)]
    assert credentials.live(s.warehouse).password == "second-Pw-2"


def test_a_wrong_secret_fails_with_advice_and_no_password(settings, password_role, boto,
                                                          tmp_path):
    sm = boto("secretsmanager")
    secret_id = sm.create_secret(
        Name="elt/warehouse-wrong",
        SecretString=rds_secret(settings, "secret_wh", "not-the-Pw-9"),
    )["ARN"]
    s = load_settings({"ELT_HOME": str(tmp_path), "ELT_PG_PORT": str(settings.port),
                       "ELT_WAREHOUSE_SECRET_ID": secret_id})
    from loader.db import ConnectFailed

    with pytest.raises(ConnectFailed) as failed:
        connect_raw(s.warehouse)
    assert "ELT_*_SECRET_ID" in str(failed.value)
    assert "not-the-Pw-9" not in str(failed.value)
