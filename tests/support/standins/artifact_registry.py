"""Artifact Registry's repositories and the Docker images pushed to them, as far as a release
and a Dataflow launch need: which images exist, in which repository, under which tag. Docker
repositories created with immutable tags refuse a tag pushed again with other contents."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

_IMAGE = re.compile(
    r"(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
    r"(?P<name>[^:@]+):(?P<tag>[\w.-]+)"
)


class PushRefused(Exception):
    pass


@dataclass
class Repository:
    name: str  # projects/P/locations/L/repositories/R
    format: str  # DOCKER, PYTHON
    immutable_tags: bool = False
    images: dict[str, str] = field(default_factory=dict)  # "name:tag" -> digest


def repository_of(image: str) -> str | None:
    """The repository resource an Artifact Registry image reference lives in."""
    match = _IMAGE.fullmatch(image)
    if match is None:
        return None
    return (
        f"projects/{match['project']}/locations/{match['location']}"
        f"/repositories/{match['repository']}"
    )


class ArtifactRegistryState:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.repositories: dict[str, Repository] = {}

    def reset(self) -> None:
        with self._lock:
            self.repositories.clear()

    def create_repository(self, name: str, format: str, immutable_tags: bool = False) -> None:
        with self._lock:
            if name in self.repositories:
                raise PushRefused(f"the repository {name} already exists")
            self.repositories[name] = Repository(name, format.upper(), immutable_tags)

    def push(self, image: str, digest: str) -> None:
        repository = repository_of(image)
        with self._lock:
            found = self.repositories.get(repository or "")
            if found is None or found.format != "DOCKER":
                raise PushRefused(f"name unknown: Repository {repository or image} not found")
            tagged = image.rsplit("/", 1)[1]
            if found.immutable_tags and found.images.get(tagged, digest) != digest:
                raise PushRefused(f"tag {tagged} is immutable and already names other contents")
            found.images[tagged] = digest

    def digest_of(self, image: str) -> str | None:
        repository = repository_of(image)
        with self._lock:
            found = self.repositories.get(repository or "")
            return found.images.get(image.rsplit("/", 1)[1]) if found else None
