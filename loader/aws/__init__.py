"""The optional AWS features (`pip install -e '.[aws]'`): S3 landing zone and exports,
Secrets Manager and RDS IAM credentials, CloudWatch logs and metrics, the Lambda package.
Nothing outside this package imports boto3; the core imports these modules only when a
feature is configured."""

from __future__ import annotations

from typing import Any

from loader.config import UserError


class AwsUnavailable(UserError, RuntimeError):
    """boto3 is not installed, or AWS refused a call; the message says what to do."""


def client(service: str, *, bounded: bool = False) -> Any:
    """A boto3 client; the endpoint (AWS_ENDPOINT_URL: LocalStack, moto), region and
    credentials come from boto3's own configuration chain, so one code path serves all.
    `bounded`: short timeouts and few retries, for calls that must not hold a run up
    (CloudWatch); botocore's defaults can wait minutes on an unreachable endpoint."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise AwsUnavailable(
            f"an AWS feature needs boto3 ({service}): pip install -e '.[aws]'"
        ) from None
    config = (
        Config(connect_timeout=3, read_timeout=10,
               retries={"max_attempts": 3, "mode": "standard"})
        if bounded else None
    )
    return boto3.session.Session().client(service, config=config)
