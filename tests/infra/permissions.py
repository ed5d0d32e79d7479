"""What the deployer needs to apply terraform/ and run cloudbuild.yaml, as IAM permissions.

Each resource and data source type of terraform/ maps to the permissions
that creating (or reading) it takes, and each permission to the predefined
roles that include it. The permission names come from each API's "required
permissions" table, the roles from Google's predefined role definitions
(the IAM roles and permissions index); owner and editor are left out, since
the deployer must not need them. A type that terraform/ starts to use without
an entry here fails tests/infra/test_bootstrap.py, so this map grows with the
configuration.
"""

from __future__ import annotations

from typing import Iterable

# permission -> predefined roles that include it
PERMISSION_ROLES: dict[str, frozenset[str]] = {
    perm: frozenset(roles)
    for perm, roles in {
        "serviceusage.services.enable": (
            "roles/serviceusage.serviceUsageAdmin", "roles/monitoring.editor", "roles/monitoring.admin"),
        "iam.serviceAccounts.create": ("roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountCreator"),
        "iam.serviceAccounts.update": ("roles/iam.serviceAccountAdmin",),
        "iam.serviceAccounts.get": (
            "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountCreator", "roles/iam.serviceAccountUser",
            "roles/iam.securityAdmin"),
        "iam.serviceAccounts.setIamPolicy": ("roles/iam.serviceAccountAdmin", "roles/iam.securityAdmin"),
        # Cloud Run (a service's runtime account), Pub/Sub (a push subscription's
        # token) and Cloud Scheduler (a job's token) check that the caller may act as it.
        "iam.serviceAccounts.actAs": ("roles/iam.serviceAccountUser",),
        "resourcemanager.projects.get": (
            "roles/resourcemanager.projectIamAdmin", "roles/browser", "roles/run.admin", "roles/run.developer",
            "roles/artifactregistry.admin", "roles/artifactregistry.reader", "roles/artifactregistry.writer",
            "roles/cloudbuild.builds.viewer", "roles/cloudbuild.builds.editor", "roles/cloudscheduler.admin",
            "roles/cloudtasks.admin", "roles/cloudtasks.queueAdmin", "roles/datastore.owner",
            "roles/datastore.indexAdmin", "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountCreator",
            "roles/iam.serviceAccountUser", "roles/logging.admin", "roles/logging.configWriter",
            "roles/monitoring.admin", "roles/monitoring.editor", "roles/pubsub.admin", "roles/pubsub.editor",
            "roles/secretmanager.admin", "roles/storage.admin", "roles/storage.objectAdmin"),
        "resourcemanager.projects.setIamPolicy": ("roles/resourcemanager.projectIamAdmin", "roles/iam.securityAdmin"),
        "artifactregistry.repositories.create": ("roles/artifactregistry.admin",),
        # cleanup policies are a repository update
        "artifactregistry.repositories.update": ("roles/artifactregistry.admin",),
        "artifactregistry.repositories.setIamPolicy": ("roles/artifactregistry.admin", "roles/iam.securityAdmin"),
        "artifactregistry.repositories.uploadArtifacts": ("roles/artifactregistry.writer", "roles/artifactregistry.admin"),
        "artifactregistry.repositories.downloadArtifacts": (
            "roles/artifactregistry.reader", "roles/artifactregistry.writer", "roles/artifactregistry.admin"),
        "run.services.create": ("roles/run.admin", "roles/run.developer"),
        "run.services.setIamPolicy": ("roles/run.admin", "roles/iam.securityAdmin"),
        "cloudscheduler.jobs.create": ("roles/cloudscheduler.admin",),
        "cloudtasks.queues.create": ("roles/cloudtasks.admin", "roles/cloudtasks.queueAdmin"),
        "cloudtasks.queues.setIamPolicy": (
            "roles/cloudtasks.admin", "roles/cloudtasks.queueAdmin", "roles/iam.securityAdmin"),
        "datastore.databases.create": ("roles/datastore.owner",),
        # Firestore's IAM page: fields.patch (TTL and index exemptions) takes datastore.indexes.update.
        "datastore.indexes.update": ("roles/datastore.owner", "roles/datastore.indexAdmin"),
        # Composite indexes (the inbox's queries, the knowledge base's vector index): indexes.create.
        "datastore.indexes.create": ("roles/datastore.owner", "roles/datastore.indexAdmin"),
        "logging.logMetrics.create": ("roles/logging.configWriter", "roles/logging.admin"),
        "logging.logEntries.create": ("roles/logging.logWriter", "roles/logging.admin"),
        "logging.sinks.create": ("roles/logging.configWriter", "roles/logging.admin"),
        # BigQuery's access-control page: creating a dataset, changing its expiry, granting on it.
        "bigquery.datasets.create": (
            "roles/bigquery.dataEditor", "roles/bigquery.dataOwner", "roles/bigquery.user", "roles/bigquery.admin"),
        "bigquery.datasets.update": ("roles/bigquery.dataOwner", "roles/bigquery.admin"),
        "bigquery.datasets.setIamPolicy": ("roles/bigquery.dataOwner", "roles/bigquery.admin"),
        "monitoring.alertPolicies.create": (
            "roles/monitoring.alertPolicyEditor", "roles/monitoring.editor", "roles/monitoring.admin"),
        "monitoring.dashboards.create": (
            "roles/monitoring.dashboardEditor", "roles/monitoring.editor", "roles/monitoring.admin"),
        "pubsub.topics.create": ("roles/pubsub.editor", "roles/pubsub.admin"),
        "pubsub.topics.setIamPolicy": ("roles/pubsub.admin", "roles/iam.securityAdmin"),
        "pubsub.topics.attachSubscription": ("roles/pubsub.editor", "roles/pubsub.admin"),
        "pubsub.subscriptions.create": ("roles/pubsub.editor", "roles/pubsub.admin"),
        "pubsub.subscriptions.setIamPolicy": ("roles/pubsub.admin", "roles/iam.securityAdmin"),
        "secretmanager.secrets.create": ("roles/secretmanager.admin",),
        "secretmanager.secrets.setIamPolicy": ("roles/secretmanager.admin", "roles/iam.securityAdmin"),
        "secretmanager.versions.add": ("roles/secretmanager.admin", "roles/secretmanager.secretVersionAdder"),
        "cloudbuild.builds.get": ("roles/cloudbuild.builds.viewer", "roles/cloudbuild.builds.editor"),
        "cloudbuild.builds.list": ("roles/cloudbuild.builds.viewer", "roles/cloudbuild.builds.editor"),
        "storage.objects.get": (
            "roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin", "roles/storage.admin"),
        "storage.objects.list": (
            "roles/storage.objectViewer", "roles/storage.objectUser", "roles/storage.objectAdmin", "roles/storage.admin"),
        "storage.objects.create": ("roles/storage.objectUser", "roles/storage.objectAdmin", "roles/storage.admin"),
        "storage.objects.delete": ("roles/storage.objectUser", "roles/storage.objectAdmin", "roles/storage.admin"),
    }.items()
}

# Resource types of terraform/ -> permissions to create them. terraform_data is Terraform's own.
RESOURCE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "google_project_service": ("serviceusage.services.enable",),
    "google_service_account": ("iam.serviceAccounts.create", "iam.serviceAccounts.update"),
    "google_service_account_iam_member": ("iam.serviceAccounts.setIamPolicy",),
    "google_project_iam_member": ("resourcemanager.projects.setIamPolicy",),
    "google_artifact_registry_repository": (
        "artifactregistry.repositories.create", "artifactregistry.repositories.update"),
    "google_artifact_registry_repository_iam_member": ("artifactregistry.repositories.setIamPolicy",),
    "google_cloud_run_v2_service": ("run.services.create", "iam.serviceAccounts.actAs"),
    "google_cloud_run_v2_service_iam_member": ("run.services.setIamPolicy",),
    "google_cloud_scheduler_job": ("cloudscheduler.jobs.create", "iam.serviceAccounts.actAs"),
    "google_cloud_tasks_queue": ("cloudtasks.queues.create",),
    "google_cloud_tasks_queue_iam_member": ("cloudtasks.queues.setIamPolicy",),
    "google_cloud_tasks_queue_iam_binding": ("cloudtasks.queues.setIamPolicy",),
    "google_firestore_database": ("datastore.databases.create",),
    "google_firestore_field": ("datastore.indexes.update",),
    "google_firestore_index": ("datastore.indexes.create",),
    "google_logging_metric": ("logging.logMetrics.create",),
    "google_logging_project_sink": ("logging.sinks.create",),
    "google_bigquery_dataset": ("bigquery.datasets.create", "bigquery.datasets.update"),
    "google_bigquery_dataset_iam_member": ("bigquery.datasets.setIamPolicy",),
    "google_monitoring_alert_policy": ("monitoring.alertPolicies.create",),
    "google_monitoring_dashboard": ("monitoring.dashboards.create",),
    "google_pubsub_topic": ("pubsub.topics.create",),
    "google_pubsub_topic_iam_member": ("pubsub.topics.setIamPolicy",),
    "google_pubsub_subscription": (
        "pubsub.subscriptions.create", "pubsub.topics.attachSubscription", "iam.serviceAccounts.actAs"),
    "google_pubsub_subscription_iam_member": ("pubsub.subscriptions.setIamPolicy",),
    "google_secret_manager_secret": ("secretmanager.secrets.create",),
    "google_secret_manager_secret_iam_member": ("secretmanager.secrets.setIamPolicy",),
    "google_secret_manager_secret_version": ("secretmanager.versions.add",),
    # Generated by the random provider on the deployer's machine: no Google permission.
    "random_password": (),
    "terraform_data": (),
}

# Data source types of terraform/ -> permissions to read them at plan time.
DATA_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "google_project": ("resourcemanager.projects.get",),
    "google_service_account": ("iam.serviceAccounts.get",),
    # Reads this root's own state back (release.tf): objects of the state bucket.
    "terraform_remote_state": ("bucket:state:storage.objects.get", "bucket:state:storage.objects.list"),
}

# The deploy build's own steps and Terraform's GCS backend.
BUILD_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "the gate step (gcloud builds describe/list)": ("cloudbuild.builds.get", "cloudbuild.builds.list"),
    "the build's log (logging: CLOUD_LOGGING_ONLY)": ("logging.logEntries.create",),
    "the build step's docker manifest inspect": ("artifactregistry.repositories.downloadArtifacts",),
    "the push step": ("artifactregistry.repositories.uploadArtifacts",),
    "the uploaded source": ("bucket:source:storage.objects.get", "bucket:source:storage.objects.list"),
    "the GCS backend (state and its lock)": tuple(
        f"bucket:state:storage.objects.{verb}" for verb in ("get", "list", "create", "delete")),
}


def needs(resource_types: Iterable[str], data_types: Iterable[str]) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """What each used type (and the build) needs, and the types missing from the map."""
    wanted: dict[str, tuple[str, ...]] = {}
    unmapped = []
    for rtype in sorted(set(resource_types)):
        if rtype in RESOURCE_PERMISSIONS:
            wanted[rtype] = RESOURCE_PERMISSIONS[rtype]
        else:
            unmapped.append(rtype)
    for dtype in sorted(set(data_types)):
        if dtype in DATA_PERMISSIONS:
            wanted[f"data.{dtype}"] = DATA_PERMISSIONS[dtype]
        else:
            unmapped.append(f"data.{dtype}")
    wanted.update(BUILD_PERMISSIONS)
    return wanted, unmapped


def missing(wanted: dict[str, tuple[str, ...]], project_roles: set[str],
            bucket_roles: dict[str, set[str]]) -> list[str]:
    """Each (what, permission) that no granted role covers, with the roles that would."""
    gaps = []
    for what, permissions in wanted.items():
        for permission in permissions:
            roles = set(project_roles)
            if permission.startswith("bucket:"):
                _, bucket, permission = permission.split(":", 2)
                roles |= bucket_roles.get(bucket, set())
            candidates = PERMISSION_ROLES[permission]
            if not roles & candidates:
                gaps.append(f"{what} needs {permission}, granted by {sorted(candidates)}")
    return gaps
