"""A release image as ECR serves it: the Stubber answers `batch_get_image` and
`get_download_url_for_layer`, and a real HTTP server on 127.0.0.1 stands where the presigned
S3 URL of the config blob would point."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.stub import Stubber

from pipelines.host.ports import free_port
from pipelines.targets.aws.images import REVISION_LABEL, ImageRef
from tests.pipelines.targets.aws.conftest import ACCOUNT, REGION

REPOSITORY = "drydock-staging"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPTED = [
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    OCI_MANIFEST,
    "application/vnd.docker.distribution.manifest.v2+json",
]


def digest_of(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def config_blob(labels: dict[str, str]) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "config": {"Labels": labels}}
    ).encode()


@contextmanager
def blob_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """Serves `blobs[path]` over HTTP; yields the base URL and the dict to fill."""
    blobs: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = blobs.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", blobs
    finally:
        server.shutdown()
        server.server_close()


def expect_image(
    stub: Stubber,
    base_url: str,
    blobs: dict[str, bytes],
    labels: dict[str, str],
    *,
    served: bytes | None = None,
) -> str:
    """ECR's answers for an image index (the image, then a buildx attestation) whose image
    has `labels`; the server hands out `served` instead of the real config when given.
    Returns the image URI pinned by the index's digest."""
    config = config_blob(labels)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [],
        }
    )
    attestation = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "e" * 64, "size": 1}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest_of(manifest.encode()),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                {
                    **attestation,
                    "platform": {"architecture": "unknown", "os": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                },
            ],
        }
    )
    uri = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}@{digest_of(index.encode())}"
    ref = ImageRef.parse(uri)
    for digest, body, media_type in (
        (ref.digest, index, OCI_INDEX),
        (digest_of(manifest.encode()), manifest, OCI_MANIFEST),
    ):
        stub.add_response(
            "batch_get_image",
            {
                "images": [
                    {
                        "registryId": ACCOUNT,
                        "repositoryName": REPOSITORY,
                        "imageId": {"imageDigest": digest},
                        "imageManifest": body,
                        "imageManifestMediaType": media_type,
                    }
                ],
                "failures": [],
            },
            {
                "registryId": ACCOUNT,
                "repositoryName": REPOSITORY,
                "imageIds": [{"imageDigest": digest}],
                "acceptedMediaTypes": ACCEPTED,
            },
        )
    stub.add_response(
        "get_download_url_for_layer",
        {"downloadUrl": f"{base_url}/config", "layerDigest": digest_of(config)},
        {"registryId": ACCOUNT, "repositoryName": REPOSITORY, "layerDigest": digest_of(config)},
    )
    blobs["/config"] = config if served is None else served
    return uri


def labelled(commit: str = COMMIT) -> dict[str, str]:
    return {"org.opencontainers.image.title": "drydock API", REVISION_LABEL: commit}
