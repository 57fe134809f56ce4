from django.db import models


class SystemType(models.TextChoices):
    SERVICENOW_CMDB = "servicenow_cmdb", "ServiceNow CMDB"
    JIRA_ASSETS = "jira_assets", "Jira Assets"
    FRESHSERVICE_CMDB = "freshservice_cmdb", "Freshservice CMDB"
    SERVICENOW_ITSM = "servicenow_itsm", "ServiceNow ITSM"
    JIRA_SERVICE_MANAGEMENT = "jira_service_management", "Jira Service Management"
    FRESHSERVICE_ITSM = "freshservice_itsm", "Freshservice ITSM"
    ENTRA_ID = "entra_id", "Entra ID"
    ACTIVE_DIRECTORY = "active_directory", "Active Directory"
    APPLE_BUSINESS_MANAGER = "apple_business_manager", "Apple Business Manager"
    ANDROID_ENTERPRISE = "android_enterprise", "Android Enterprise"
    DATADOG = "datadog", "Datadog"
    SPLUNK_HEC = "splunk_hec", "Splunk HEC"
    ELASTIC = "elastic", "Elastic"
    DEFENDER_ENDPOINT = "defender_endpoint", "Defender for Endpoint"
    TRIVY = "trivy", "Trivy"
    GRYPE = "grype", "Grype"
    SNYK = "snyk", "Snyk"


class Category(models.TextChoices):
    CMDB = "cmdb", "CMDB"
    ITSM = "itsm", "ITSM"
    IDENTITY = "identity", "Identity"
    MDM = "mdm", "MDM"
    MONITORING = "monitoring", "Monitoring"
    SECURITY = "security", "Security"


class RecordKind(models.TextChoices):
    """What a connector's records are, and so which domain app's sink the engine writes them to."""

    ASSET = "asset", "Assets"
    CHANGE = "change", "Change requests"
    DIRECTORY = "directory", "Directory users and groups"
    FINDING = "finding", "Security findings (and the machines they are on)"
    EVENT = "event", "Events sent out (monitoring sinks read nothing)"


class Capability(models.TextChoices):
    """What a connector can do beyond fetching; the API and the engine ask `Connector.supports`."""

    TEST_CONNECTION = "test_connection", "Test connection"
    FULL = "full", "Full sync"
    INCREMENTAL = "incremental", "Incremental sync"
    DRY_RUN = "dry_run", "Dry run"
    LOOKUP = "lookup", "Look records up by id"
    LIST_IDS = "list_ids", "List the ids of every live record (deletions seen by incremental syncs)"
    CHANGE_REQUESTS = "change_requests", "Send change requests"
    PASSWORD_SIGN_IN = "password_sign_in", "Check a user's password by binding as them"
    SEND_EVENTS = "send_events", "Send domain events (monitoring sinks)"
    SEND_METRICS = "send_metrics", "Send metric series (monitoring sinks)"
    REPORT_UPLOAD = "report_upload", "Parse an uploaded scanner report"


class AuthType(models.TextChoices):
    BASIC = "basic", "HTTP Basic"
    BEARER = "bearer", "Bearer / API token"
    API_KEY = "api_key", "API key"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth 2.0 client credentials"
    OAUTH2_PASSWORD = "oauth2_password", "OAuth 2.0 password grant"
    # Apple Business Manager API: client credentials with an ES256 client assertion signed by the account's key.
    OAUTH2_CLIENT_ASSERTION = "oauth2_client_assertion", "OAuth 2.0 client assertion (signed with a private key)"
    APPLE_SERVER_TOKEN = "apple_server_token", "Server token (legacy)"  # Apple DEP: OAuth 1.0a-signed session
    GOOGLE_SERVICE_ACCOUNT = "google_service_account", "Google service account key"
    NONE = "none", "None"


class SyncMode(models.TextChoices):
    FULL = "full", "Full"
    INCREMENTAL = "incremental", "Incremental"


class Trigger(models.TextChoices):
    MANUAL = "manual", "Manual (API or UI)"
    SCHEDULE = "schedule", "Schedule"
    CLI = "cli", "Command line"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"
    # Stopped on request (the API, `syncplane sync --cancel`, Ctrl-C on a CLI run); its checkpoint is kept.
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED_RUN_STATUSES = (RunStatus.SUCCESS, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED)


class ErrorKind(models.TextChoices):
    TRANSIENT = "transient", "Transient"
    PERMANENT = "permanent", "Permanent"
    POLICY = "policy", "Policy violation"


class RecordAction(models.TextChoices):
    CREATE = "create", "Create"
    UPDATE = "update", "Update"
    DELETE = "delete", "Delete"
    RESTORE = "restore", "Restore"
    NONE = "none", "None"


class RecordStatus(models.TextChoices):
    APPLIED = "applied", "Applied"
    PLANNED = "planned", "Planned (dry run)"
    FAILED = "failed", "Failed"
