"""S3 objects as streams: a multipart upload behind a file-like writer, listings, downloads."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from loader.aws import AwsUnavailable, client
from loader.config import ConfigError

# S3 takes parts of 5 MiB or more (the last may be smaller) and 10,000 parts per object: parts
# of 8 MiB hold memory to one part and objects to 80 GB
PART_SIZE = 8 << 20


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without a trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ConfigError(f"{url!r} is not an S3 URL: use s3://bucket/prefix")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, *names: str) -> str:
        return "/".join(p for p in (self.prefix, *names) if p)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


class MultipartWriter(io.RawIOBase):
    """A write-only file whose bytes go to one S3 object by multipart upload, PART_SIZE at a
    time: memory holds one part, whatever the object's size. `close` completes the upload;
    `abort` (or an exception inside `with`) discards it, leaving no object behind."""

    def __init__(self, s3: Any, bucket: str, key: str, part_size: int = PART_SIZE) -> None:
        super().__init__()
        self.s3, self.bucket, self.key, self.part_size = s3, bucket, key, part_size
        self.upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self.parts: list[dict] = []
        self.buffer = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.buffer += view
        self.position += len(view)
        while len(self.buffer) >= self.part_size:
            self._upload(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(view)

    def _upload(self, chunk: bytes) -> None:
        number = len(self.parts) + 1
        done = self.s3.upload_part(Bucket=self.bucket, Key=self.key, PartNumber=number,
                                   UploadId=self.upload_id, Body=chunk)
        self.parts.append({"PartNumber": number, "ETag": done["ETag"]})

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.buffer or not self.parts:
                self._upload(bytes(self.buffer))
                self.buffer.clear()
            self.s3.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
        except Exception:
            self.abort()
            raise
        super().close()

    def abort(self) -> None:
        if not self.closed:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key,
                                           UploadId=self.upload_id)
            super().close()

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()
        else:
            self.close()


def s3_client() -> Any:
    return client("s3")


def list_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Every key under `prefix`, in S3's (lexical) order."""
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"]
    except s3.exceptions.NoSuchBucket:
        raise AwsUnavailable(f"the bucket {bucket} does not exist: create it, or fix "
                             "ELT_S3_URL") from None
