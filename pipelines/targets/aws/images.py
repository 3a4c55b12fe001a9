"""What a release image in ECR says about itself: the labels of its config.

`batch_get_image` gives the image's manifest. When buildx pushed an image index (it adds
provenance attestations by default), the first manifest for a real platform is the image.
The manifest names its config blob; `get_download_url_for_layer` gives a short-lived URL
for that blob, which is fetched and checked against the sha256 the manifest names, so what
is read is what was pushed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from pipelines.targets.base import TargetError

REVISION_LABEL = "org.opencontainers.image.revision"
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
URI = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*)@(?P<digest>sha256:[0-9a-f]{64})$"
)
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ImageRef:
    account: str
    region: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, uri: str) -> ImageRef:
        found = URI.match(uri)
        if not found:
            raise TargetError(
                f"{uri!r} is not an ECR image pinned by digest "
                "(<account>.dkr.ecr.<region>.amazonaws.com/<repository>@sha256:<64 hex>)"
            )
        return cls(**found.groupdict())

    @property
    def where(self) -> str:
        return f"{self.repository}@{self.digest}"


def _manifest(ecr: Any, ref: ImageRef, digest: str) -> tuple[str, dict[str, Any]]:
    response = ecr.batch_get_image(
        registryId=ref.account,
        repositoryName=ref.repository,
        imageIds=[{"imageDigest": digest}],
        acceptedMediaTypes=[*INDEX_TYPES, *MANIFEST_TYPES],
    )
    if not response.get("images"):
        failures = "; ".join(
            f"{f.get('failureCode')}: {f.get('failureReason')}" for f in response["failures"]
        )
        raise TargetError(
            f"ECR has no image {ref.repository}@{digest} in account {ref.account}, "
            f"{ref.region} ({failures or 'no answer'}); push the release image first"
        )
    image = response["images"][0]
    manifest = json.loads(image["imageManifest"])
    return str(image.get("imageManifestMediaType") or manifest.get("mediaType", "")), manifest


def _platform_image(ref: ImageRef, index: dict[str, Any]) -> str:
    """The digest of the index's first image for a real platform (not an attestation)."""
    for entry in index.get("manifests", []):
        platform = entry.get("platform", {})
        annotations = entry.get("annotations", {})
        if platform.get("os") == "unknown" or "vnd.docker.reference.type" in annotations:
            continue
        return str(entry["digest"])
    raise TargetError(f"the image index {ref.where} lists no image for a platform")


def _download(url: str) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise TargetError(f"ECR gave a download URL that is not HTTP(S): {url[:40]}...")
    try:
        response = httpx.get(url, timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise TargetError(f"could not download the image's config from ECR: {exc}") from None
    return response.content


def image_labels(ecr: Any, ref: ImageRef) -> dict[str, str]:
    """The labels in the image's config, as `docker inspect` shows them."""
    media_type, manifest = _manifest(ecr, ref, ref.digest)
    if media_type in INDEX_TYPES:
        media_type, manifest = _manifest(ecr, ref, _platform_image(ref, manifest))
    config = manifest.get("config", {}).get("digest", "")
    if not config:
        raise TargetError(f"the manifest of {ref.where} ({media_type}) names no config")
    url = ecr.get_download_url_for_layer(
        registryId=ref.account, repositoryName=ref.repository, layerDigest=config
    )["downloadUrl"]
    blob = _download(url)
    if f"sha256:{hashlib.sha256(blob).hexdigest()}" != config:
        raise TargetError(f"the config blob of {ref.where} does not match its digest {config}")
    labels = json.loads(blob).get("config", {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()}
