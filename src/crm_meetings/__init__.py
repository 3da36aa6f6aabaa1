"""crm-meetings: video meetings, invitees' calendars and three CRMs kept in agreement."""

from importlib.metadata import PackageNotFoundError, version

from crm_meetings.errors import (
    AuthError,
    AuthExpiredError,
    ConfigurationError,
    ConflictError,
    CrmMeetingsError,
    NoSessionExistsError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    RefreshFailedError,
    RemoteError,
    StoreError,
    ValidationError,
)
from crm_meetings.model import (
    CrmKind,
    Invitee,
    Meeting,
    MeetingChange,
    MeetingStatus,
    Participant,
    Person,
    RecordRef,
    ResponseStatus,
    Session,
    apply_change,
    diff,
    new_meeting,
)

try:
    __version__ = version("crm-meetings")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AuthError",
    "AuthExpiredError",
    "ConfigurationError",
    "ConflictError",
    "CrmKind",
    "CrmMeetingsError",
    "Invitee",
    "Meeting",
    "MeetingChange",
    "MeetingStatus",
    "NoSessionExistsError",
    "NotFoundError",
    "Participant",
    "PermissionDeniedError",
    "Person",
    "RateLimitedError",
    "RecordRef",
    "RefreshFailedError",
    "RemoteError",
    "ResponseStatus",
    "Session",
    "StoreError",
    "ValidationError",
    "__version__",
    "apply_change",
    "diff",
    "new_meeting",
]
