"""Who may call what, as Google's IAM decides it: a member holds the roles bound to it on a
resource or on the resource's project, a role grants the permissions Google's role reference
lists, and a call whose caller lacks the permission its method requires is answered 403.

The roles are those `quotestream gcp bootstrap` grants (and the administrator's owner role),
each with the permissions of the services the stand-ins serve. Sources, read 2026-12:
Google's IAM role reference, https://cloud.google.com/iam/docs/roles-permissions (one page per
service, e.g. .../roles-permissions/dataflow), as `gcloud iam roles describe` returns it and as
the repository darkbitio/gcp-iam-role-permissions records it (roles/composer.worker,
roles/dataflow.worker, roles/dataflow.developer, roles/run.developer, roles/monitoring.viewer,
roles/artifactregistry.reader, roles/viewer). Only permissions under the prefixes in
`CHECKED_SERVICES` are listed: a role's permissions on other services (compute, logging,
container, ...) are left out, never invented.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from tests.support.standins.oauth import OAuthState, claims_of
from tests.support.standins.wire import ApiError

# The services whose permissions a stand-in checks.
CHECKED_SERVICES = (
    "artifactregistry.",
    "dataflow.",
    "iam.serviceAccounts.",
    "monitoring.",
    "pubsub.",
    "run.",
    "secretmanager.",
    "storage.",
)

_PUBSUB_ADMIN_LIKE = (
    "pubsub.snapshots.create pubsub.snapshots.delete pubsub.snapshots.get pubsub.snapshots.list "
    "pubsub.snapshots.seek pubsub.snapshots.update pubsub.subscriptions.consume "
    "pubsub.subscriptions.create pubsub.subscriptions.delete pubsub.subscriptions.get "
    "pubsub.subscriptions.list pubsub.subscriptions.update pubsub.topics.attachSubscription "
    "pubsub.topics.create pubsub.topics.delete pubsub.topics.detachSubscription "
    "pubsub.topics.get pubsub.topics.list pubsub.topics.publish pubsub.topics.update "
    "pubsub.topics.updateTag"
)
_ARTIFACT_READ = (
    "artifactregistry.files.get artifactregistry.files.list artifactregistry.packages.get "
    "artifactregistry.packages.list artifactregistry.repositories.downloadArtifacts "
    "artifactregistry.repositories.get artifactregistry.repositories.list "
    "artifactregistry.tags.get artifactregistry.tags.list artifactregistry.versions.get "
    "artifactregistry.versions.list"
)

ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    role: frozenset(permissions.split())
    for role, permissions in {
        # Required by Google on a Composer environment's service account, project-wide.
        "roles/composer.worker": (
            f"{_ARTIFACT_READ} artifactregistry.packages.delete "
            "artifactregistry.repositories.create artifactregistry.repositories.delete "
            "artifactregistry.repositories.deleteArtifacts "
            "artifactregistry.repositories.getIamPolicy "
            "artifactregistry.repositories.setIamPolicy artifactregistry.repositories.update "
            "artifactregistry.repositories.uploadArtifacts artifactregistry.tags.create "
            "artifactregistry.tags.delete artifactregistry.tags.update "
            "artifactregistry.versions.delete "
            "monitoring.metricDescriptors.create monitoring.metricDescriptors.get "
            "monitoring.metricDescriptors.list monitoring.monitoredResourceDescriptors.get "
            "monitoring.monitoredResourceDescriptors.list monitoring.timeSeries.create "
            f"monitoring.timeSeries.list {_PUBSUB_ADMIN_LIKE} "
            "storage.buckets.create storage.buckets.get storage.buckets.list "
            "storage.objects.create storage.objects.delete storage.objects.get "
            "storage.objects.getIamPolicy storage.objects.list storage.objects.setIamPolicy "
            "storage.objects.update"
        ),
        "roles/dataflow.developer": (
            "dataflow.jobs.cancel dataflow.jobs.create dataflow.jobs.get dataflow.jobs.list "
            "dataflow.jobs.snapshot dataflow.jobs.updateContents dataflow.messages.list "
            "dataflow.metrics.get dataflow.snapshots.delete dataflow.snapshots.get "
            "dataflow.snapshots.list"
        ),
        # Google's "Run a Flex Template" page asks it of the launcher and worker account.
        "roles/dataflow.worker": (
            "dataflow.jobs.get storage.buckets.get storage.objects.create storage.objects.get"
        ),
        "roles/viewer": (
            f"{_ARTIFACT_READ} artifactregistry.repositories.getIamPolicy "
            "dataflow.jobs.get dataflow.jobs.list dataflow.messages.list dataflow.metrics.get "
            "dataflow.snapshots.get dataflow.snapshots.list "
            "iam.serviceAccounts.get iam.serviceAccounts.getIamPolicy iam.serviceAccounts.list "
            "monitoring.alertPolicies.get monitoring.alertPolicies.list "
            "monitoring.dashboards.get monitoring.dashboards.list monitoring.timeSeries.list "
            "pubsub.snapshots.get pubsub.snapshots.list pubsub.snapshots.seek "
            "pubsub.subscriptions.get pubsub.subscriptions.list pubsub.topics.get "
            "pubsub.topics.list "
            "run.services.get run.services.getIamPolicy run.services.list "
            "run.revisions.get run.revisions.list "
            "secretmanager.secrets.get secretmanager.secrets.getIamPolicy "
            "secretmanager.secrets.list secretmanager.versions.get secretmanager.versions.list "
            "storage.buckets.list"
        ),
        "roles/monitoring.viewer": (
            "monitoring.alertPolicies.get monitoring.alertPolicies.list "
            "monitoring.dashboards.get monitoring.dashboards.list monitoring.timeSeries.list"
        ),
        "roles/monitoring.alertPolicyEditor": (
            "monitoring.alertPolicies.create monitoring.alertPolicies.delete "
            "monitoring.alertPolicies.get monitoring.alertPolicies.list "
            "monitoring.alertPolicies.update"
        ),
        "roles/monitoring.dashboardEditor": (
            "monitoring.dashboards.create monitoring.dashboards.delete "
            "monitoring.dashboards.get monitoring.dashboards.list monitoring.dashboards.update"
        ),
        "roles/run.developer": (
            "run.operations.delete run.operations.get run.operations.list "
            "run.revisions.delete run.revisions.get run.revisions.list run.routes.invoke "
            "run.services.create run.services.delete run.services.get "
            "run.services.getIamPolicy run.services.list run.services.update"
        ),
        "roles/run.invoker": "run.routes.invoke",
        "roles/iam.serviceAccountUser": (
            "iam.serviceAccounts.actAs iam.serviceAccounts.get iam.serviceAccounts.list"
        ),
        "roles/secretmanager.secretAccessor": "secretmanager.versions.access",
        "roles/secretmanager.viewer": (
            "secretmanager.secrets.get secretmanager.secrets.list secretmanager.versions.get "
            "secretmanager.versions.list"
        ),
        "roles/storage.objectAdmin": (
            "storage.objects.create storage.objects.delete storage.objects.get "
            "storage.objects.getIamPolicy storage.objects.list storage.objects.setIamPolicy "
            "storage.objects.update"
        ),
        "roles/storage.objectViewer": "storage.objects.get storage.objects.list",
        "roles/artifactregistry.reader": _ARTIFACT_READ,
        "roles/pubsub.publisher": "pubsub.topics.publish",
        "roles/pubsub.subscriber": (
            "pubsub.snapshots.seek pubsub.subscriptions.consume pubsub.topics.attachSubscription"
        ),
        "roles/pubsub.viewer": (
            "pubsub.snapshots.get pubsub.snapshots.list pubsub.subscriptions.get "
            "pubsub.subscriptions.list pubsub.topics.get pubsub.topics.list"
        ),
        # Permissions of services no stand-in checks (BigQuery's are the emulator's, which
        # has no IAM): the roles are known, so a grant of them is not an unknown role.
        "roles/bigquery.dataEditor": "",
        "roles/bigquery.jobUser": "",
        "roles/composer.ServiceAgentV2Ext": "",
    }.items()
}
OWNER = "roles/owner"  # every permission


def member_of(email: str) -> str:
    kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
    return f"{kind}:{email}"


class Grants:
    """Role bindings by full resource name (`projects/p`, `projects/p/topics/t`,
    `projects/_/buckets/b`, `projects/p/serviceAccounts/EMAIL`, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bindings: dict[str, dict[str, set[str]]] = {}

    def grant(self, resource: str, role: str, member: str) -> None:
        if role != OWNER and role not in ROLE_PERMISSIONS:
            raise ValueError(f"no permissions recorded for {role}: add it to ROLE_PERMISSIONS")
        with self._lock:
            self._bindings.setdefault(resource, {}).setdefault(role, set()).add(member)

    def revoke(self, resource: str, role: str, member: str) -> None:
        with self._lock:
            roles = self._bindings.get(resource, {})
            roles.get(role, set()).discard(member)
            if not roles.get(role, True):
                del roles[role]
            if not roles:
                self._bindings.pop(resource, None)

    def roles_of(self, member: str, resources: Iterable[str]) -> set[str]:
        with self._lock:
            return {
                role
                for resource in resources
                for role, members in self._bindings.get(resource, {}).items()
                if member in members
            }

    def bindings(self) -> dict[str, dict[str, set[str]]]:
        """A copy: resource -> role -> members."""
        with self._lock:
            return {
                resource: {role: set(members) for role, members in roles.items() if members}
                for resource, roles in self._bindings.items()
            }

    def reset(self) -> None:
        with self._lock:
            self._bindings.clear()


def allows(roles: Iterable[str], permission: str) -> bool:
    return any(role == OWNER or permission in ROLE_PERMISSIONS.get(role, ()) for role in roles)


def permission_denied(permission: str, resource: str) -> ApiError:
    """Google's answer to a call without the permission (AIP-193's ErrorInfo)."""
    return ApiError(
        403,
        "PERMISSION_DENIED",
        f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).",
        details=[
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": permission, "resource": resource},
            }
        ],
    )


class Authority:
    """Checks each call against `grants` once `enforced`; off, every caller may do anything
    (the adapter tests, which are about wire formats, not about roles)."""

    def __init__(self, grants: Grants, oauth: OAuthState) -> None:
        self.grants = grants
        self._oauth = oauth
        self.enforced = False

    def reset(self) -> None:
        self.enforced = False
        self.grants.reset()

    def caller(self, authorization: str) -> str | None:
        """The member a bearer token speaks for: the account an access token was issued to,
        or the issuer of a self-signed JWT."""
        token = authorization.removeprefix("Bearer ").strip()
        if not token:
            return None
        email = self._oauth.holder_of(token)
        if email is None and token.count(".") == 2:
            email = claims_of(token).get("iss")
        return member_of(email) if email else None

    def may(self, authorization: str, permission: str, *resources: str) -> bool:
        member = self.caller(authorization)
        return member is not None and self.member_may(member, permission, *resources)

    def member_may(self, member: str, permission: str, *resources: str) -> bool:
        return allows(self.grants.roles_of(member, resources), permission)

    def require(self, authorization: str, permission: str, *resources: str) -> None:
        """`resources` from the one the method acts on up to its project: a role bound on
        any of them counts."""
        if not self.enforced:
            return
        if self.caller(authorization) is None:
            raise ApiError(
                401,
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 "
                "access token, login cookie or other valid authentication credential.",
            )
        if not self.may(authorization, permission, *resources):
            raise permission_denied(permission, resources[0])
