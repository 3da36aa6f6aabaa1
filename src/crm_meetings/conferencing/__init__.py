"""Where sessions come from: Zoom and GoTo Meeting behind one protocol, plus Zoom webhooks."""

from crm_meetings.conferencing._http import HttpSettings
from crm_meetings.conferencing.base import (
    CheckResult,
    ConferencingProvider,
    Instance,
    ProviderMeeting,
    RanMeeting,
)
from crm_meetings.conferencing.goto import GoToProvider
from crm_meetings.conferencing.oauth import AccountCredentials, RefreshTokenGrant
from crm_meetings.conferencing.zoom import ZoomProvider, encode_uuid

__all__ = [
    "AccountCredentials",
    "CheckResult",
    "ConferencingProvider",
    "GoToProvider",
    "HttpSettings",
    "Instance",
    "ProviderMeeting",
    "RanMeeting",
    "RefreshTokenGrant",
    "ZoomProvider",
    "encode_uuid",
]
