"""A small S3 client (AWS Signature V4 over `requests`) to create the artifact bucket and read MinIO back.

The tests need four calls (make bucket, put, get, list), which is less code than another dependency;
MinIO checks every signature for real, so a mistake here fails loudly.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from urllib.parse import quote

import requests

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class S3:
    """Path-style S3 on `http://<endpoint>` with static credentials."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def request(
        self, method: str, path: str, query: dict[str, str] | None = None, body: bytes = b""
    ) -> requests.Response:
        """One signed request; raises for a non-2xx answer (with MinIO's error body)."""
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        canonical_uri = quote(path, safe="/-_.~")
        canonical_query = "&".join(
            f"{quote(key, safe='-_.~')}={quote(value, safe='-_.~')}" for key, value in sorted((query or {}).items())
        )
        headers = {"host": self.endpoint, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
        signed_headers = ";".join(sorted(headers))
        canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in sorted(headers))
        canonical_request = "\n".join(
            [method, canonical_uri, canonical_query, canonical_headers, signed_headers, payload_hash]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        key = _hmac(_hmac(_hmac(_hmac(f"AWS4{self.secret_key}".encode(), day), self.region), "s3"), "aws4_request")
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        url = f"http://{self.endpoint}{canonical_uri}" + (f"?{canonical_query}" if canonical_query else "")
        response = requests.request(method, url, headers=headers, data=body, timeout=30)
        if not response.ok:
            raise RuntimeError(f"S3 {method} {path}: HTTP {response.status_code}: {response.text[:500]}")
        return response

    def create_bucket(self, bucket: str) -> None:
        """Make a bucket (what KFP's API server does for `mlpipeline` at start)."""
        self.request("PUT", f"/{bucket}")

    def bucket_exists(self, bucket: str) -> bool:
        """HEAD bucket."""
        try:
            self.request("HEAD", f"/{bucket}")
        except RuntimeError:
            return False
        return True

    def put(self, bucket: str, key: str, data: bytes) -> None:
        """Write one object."""
        self.request("PUT", f"/{bucket}/{key}", body=data)

    def get(self, bucket: str, key: str) -> bytes:
        """Read one object."""
        return self.request("GET", f"/{bucket}/{key}").content

    def list(self, bucket: str, prefix: str = "") -> list[str]:
        """Keys under a prefix (ListObjectsV2, every page)."""
        keys: list[str] = []
        token = ""
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            root = ElementTree.fromstring(self.request("GET", f"/{bucket}", query=query).content)
            keys += [element.text or "" for element in root.iter(f"{_S3_NS}Key")]
            token = root.findtext(f"{_S3_NS}NextContinuationToken") or ""
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return keys
