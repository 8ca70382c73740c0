"""The Cloud Storage stand-in through google-cloud-storage, the JSON API's own client: buckets,
uploads (multipart, as the client sends small objects), downloads with the checksums the client
verifies, listings, the JSON API's error shape, and the permissions an upload needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.oauth import key_file
from tests.support.standins.permissions import member_of

pytestmark = pytest.mark.integration

PROJECT = "standin-project"
WRITER = f"writer@{PROJECT}.iam.gserviceaccount.com"
CREATOR = f"creator@{PROJECT}.iam.gserviceaccount.com"
NOBODY = f"nobody@{PROJECT}.iam.gserviceaccount.com"


def client(apis: GoogleApis, credentials: object | None = None) -> storage.Client:
    return storage.Client(
        project=PROJECT,
        credentials=credentials or AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": apis.url},
    )


def test_objects_go_up_and_come_back_with_their_checksums(google_apis: GoogleApis) -> None:
    gcs = client(google_apis)
    bucket = gcs.create_bucket("templates", location="us-central1")
    bucket.blob("r1/load_quotes.json").upload_from_string(b'{"image": "i"}', "application/json")
    bucket.blob("r1/extract_quotes.json").upload_from_string(b"{}", "application/json")
    bucket.blob("r2/load_quotes.json").upload_from_string(b"[]", "application/json")

    blob = gcs.bucket("templates").get_blob("r1/load_quotes.json")
    assert blob is not None
    assert (blob.size, blob.content_type) == (14, "application/json")
    assert blob.download_as_bytes(checksum="crc32c") == b'{"image": "i"}'
    assert blob.download_as_bytes(checksum="md5") == b'{"image": "i"}'
    assert [b.name for b in gcs.list_blobs("templates", prefix="r1/")] == [
        "r1/extract_quotes.json",
        "r1/load_quotes.json",
    ]
    assert gcs.get_bucket("templates").location == "US-CENTRAL1"
    assert google_apis.storage.read("templates", "r2/load_quotes.json") == b"[]"
    (upload, *_) = google_apis.recorder.of("storage", "POST", "/upload/")
    assert upload.query["uploadType"] == ["multipart"]


def test_what_is_missing_answers_in_the_json_apis_shape(google_apis: GoogleApis) -> None:
    gcs = client(google_apis)
    gcs.create_bucket("templates")

    assert gcs.bucket("templates").get_blob("absent.json") is None
    with pytest.raises(exceptions.NotFound, match=r"No such object: templates/absent\.json"):
        gcs.bucket("templates").blob("absent.json").download_as_bytes()
    with pytest.raises(exceptions.NotFound) as raised:
        gcs.get_bucket("no-such-bucket")
    assert raised.value.errors[0]["reason"] == "notFound"
    with pytest.raises(exceptions.Conflict):
        gcs.create_bucket("templates")


def test_an_upload_needs_create_and_over_an_object_delete_too(
    google_apis: GoogleApis, tmp_path: Path, loopback_only_google_auth: None
) -> None:
    """roles/dataflow.worker holds storage.objects.create on every bucket, without delete: such
    an account may add objects, never replace one, as Cloud Storage's reference says."""
    google_apis.storage.create_bucket("templates", PROJECT)
    google_apis.storage.put("templates", "r1/load_quotes.json", b"{}", "application/json")
    bucket = "projects/_/buckets/templates"
    google_apis.grants.grant(f"projects/{PROJECT}", "roles/dataflow.worker", member_of(CREATOR))
    google_apis.grants.grant(bucket, "roles/storage.objectAdmin", member_of(WRITER))
    google_apis.authority.enforced = True
    token_uri = f"{google_apis.url}/token"

    def as_account(email: str) -> storage.Bucket:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(
            key_file(tmp_path / f"{email}.json", token_uri, email),
            scopes=["https://www.googleapis.com/auth/devstorage.read_write"],
        )
        return client(google_apis, credentials).bucket("templates")

    as_account(CREATOR).blob("r2/load_quotes.json").upload_from_string(b"new")
    with pytest.raises(exceptions.Forbidden) as refused:
        as_account(CREATOR).blob("r1/load_quotes.json").upload_from_string(b"replaced")
    as_account(WRITER).blob("r1/load_quotes.json").upload_from_string(b"replaced")

    assert f"{CREATOR} does not have storage.objects.delete access" in refused.value.message
    assert google_apis.storage.read("templates", "r1/load_quotes.json") == b"replaced"
    with pytest.raises(exceptions.Forbidden) as unread:
        as_account(NOBODY).get_blob("r1/load_quotes.json")
    assert unread.value.errors[0]["reason"] == "forbidden"
