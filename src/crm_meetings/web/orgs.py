"""Which CRM org each connection serves, and the refusal of signed callers from another.

A deployment holds one connection per CRM kind (``[salesforce]``, ``[hubspot]``,
``[zoho]``), each authorised by one org. A Canvas request, HubSpot card call or Zoho
widget token from a second org is signed with the same app secret, so it would verify —
and then act through the first org's credentials. :class:`OrgBinding` refuses it (403):
the org a connection serves is configured (``[salesforce] org_id``, ``[hubspot]
portal_id``, ``[zoho] org_id``); while a connected CRM's key is unset, every signed
caller of that CRM is refused with a message naming the key. A CRM without a connection
serves the store only (each org sees its own rows; actions answer 503), so its callers
are not bound.

:meth:`OrgBinding.bind` also hands on the caller under the store org of their CRM's
connection (:func:`crm_meetings.clients.store_org`: the configured id as the admin wrote
it, e.g. a Salesforce caller's 18-character id becomes the configured 15), so the web path
reads and writes where the CLI, the sync and the worker do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Final

from crm_meetings.clients import ORG_KEYS, configured_org
from crm_meetings.config import Settings
from crm_meetings.connectors.base import CheckResult
from crm_meetings.errors import PermissionDeniedError
from crm_meetings.model import CrmKind
from crm_meetings.web.auth import CallerContext

__all__ = ["ORG_KEYS", "OrgBinding", "org_checks"]

#: per CRM: the ``[web]`` secret its signed requests are checked with
_WEB_SECRETS: Final[Mapping[CrmKind, str]] = {
    CrmKind.SALESFORCE: "salesforce_canvas_secret",
    CrmKind.HUBSPOT: "hubspot_client_secret",
    CrmKind.ZOHO: "zoho_widget_secret",
}


def _same_org(crm: CrmKind, a: str, b: str) -> bool:
    """Salesforce ids are 15 case-sensitive characters plus an optional 3-letter suffix."""
    if crm is CrmKind.SALESFORCE:
        return a[:15] == b[:15]
    return a == b


@dataclass(frozen=True, slots=True)
class OrgBinding:
    """The org of each configured CRM connection; ``connected`` are the CRMs with one."""

    orgs: Mapping[CrmKind, str]
    connected: frozenset[CrmKind]

    @classmethod
    def from_settings(cls, settings: Settings, connected: Collection[CrmKind]) -> OrgBinding:
        orgs = {}
        for crm in ORG_KEYS:
            value = configured_org(settings, crm)
            if value is not None:
                orgs[crm] = value
        return cls(orgs, frozenset(connected))

    def bind(self, caller: CallerContext) -> CallerContext:
        """:meth:`check` ``caller``, then the same caller in the store org of their CRM's
        connection (the configured id); an unbound CRM's caller keeps their own org."""
        self.check(caller)
        served = self.orgs.get(caller.crm)
        if served is None or served == caller.org_id:
            return caller
        return replace(caller, org_id=served)

    def check(self, caller: CallerContext) -> None:
        """Raise 403 unless this installation serves the caller's org on their CRM."""
        key, what = ORG_KEYS[caller.crm]
        served = self.orgs.get(caller.crm)
        if served is None:
            if caller.crm not in self.connected:
                return
            raise PermissionDeniedError(
                f"This crm-meetings installation has a {caller.crm.value} connection but does "
                f"not say which {what} it serves, so it refuses every {what}",
                hint=f"Ask your crm-meetings admin to set [{caller.crm.value}] {key} to the "
                f"{what} the connection was authorised in, then restart crm-meetings.",
            )
        if not _same_org(caller.crm, caller.org_id, served):
            raise PermissionDeniedError(
                f"This crm-meetings installation serves {what} {served}; your request comes "
                f"from {what} {caller.org_id}",
                hint="Ask your admin to install crm-meetings for your own org (one "
                "installation per org), or open the panel from the org it serves.",
            )


def org_checks(settings: Settings) -> list[CheckResult] | None:
    """``doctor`` lines: the org each enabled CRM serves on the web, or the key to set when
    its pages are configured (``[web]`` secret) but the org id is not."""
    binding = OrgBinding.from_settings(
        settings, [crm for crm in ORG_KEYS if getattr(settings, crm.value).enabled]
    )
    results = []
    for crm in sorted(binding.connected):
        key, what = ORG_KEYS[crm]
        name = f"web {crm.value} org"
        if crm in binding.orgs:
            results.append(CheckResult(name, True, f"serves {what} {binding.orgs[crm]}"))
        elif getattr(settings.web, _WEB_SECRETS[crm]) is not None:
            results.append(
                CheckResult(
                    name,
                    False,
                    f"[{crm.value}] {key} is not set: the web app refuses every {what}",
                    f"Set [{crm.value}] {key} to the {what} the connection was authorised in.",
                )
            )
    return results or None
