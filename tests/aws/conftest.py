"""A local AWS endpoint for the AWS tests: moto in server mode on 127.0.0.1, a free port.

Every boto3 client finds it through AWS_ENDPOINT_URL (as it would LocalStack), with dummy
credentials: nothing leaves the machine and no account is needed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import free_port

pytest.importorskip("boto3", reason="the AWS extra is not installed: pip install -e '.[aws]'")
pytest.importorskip("moto.server", reason="moto[server] is not installed (the dev extra)")


@pytest.fixture(scope="session")
def aws() -> Iterator[dict[str, str]]:
    """The moto server's environment, set in os.environ for the session's clients."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def boto(aws):
    """A boto3 client factory pointed at the moto server."""
    import boto3

    return lambda service: boto3.session.Session().client(service)
