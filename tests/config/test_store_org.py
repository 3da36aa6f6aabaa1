"""The one rule for the store org of a CRM connection, and how per-org commands pick one."""

from __future__ import annotations

import pytest

from crm_meetings.clients import org_for_cli, store_org, store_orgs
from crm_meetings.config import Settings, load_settings
from crm_meetings.errors import ValidationError
from crm_meetings.model import CrmKind
from crm_meetings.store import DEFAULT_ORG_ID
from crm_meetings.web.auth import CallerContext
from crm_meetings.web.orgs import OrgBinding

SF_15 = "00D5g000004ABCD"
SF_18 = SF_15 + "EAU"


def _settings(**env: str) -> Settings:
    base = {
        "CRM_MEETINGS_HUBSPOT__ENABLED": "true",
        "CRM_MEETINGS_HUBSPOT__ACCESS_TOKEN": "pat-na1-token",
        "CRM_MEETINGS_SALESFORCE__ENABLED": "true",
        "CRM_MEETINGS_SALESFORCE__CLIENT_ID": "cid",
        "CRM_MEETINGS_SALESFORCE__CLIENT_SECRET": "sf-client-secret",
        "CRM_MEETINGS_SALESFORCE__REFRESH_TOKEN": "sf-refresh-token",
    }
    return load_settings(env={**base, **env})


def test_the_configured_org_else_the_default() -> None:
    settings = _settings(CRM_MEETINGS_SALESFORCE__ORG_ID=SF_15)
    assert store_org(settings, CrmKind.SALESFORCE) == SF_15
    assert store_org(settings, CrmKind.HUBSPOT) == DEFAULT_ORG_ID
    assert store_org(settings, CrmKind.ZOHO) == DEFAULT_ORG_ID  # not enabled, no org id
    assert store_orgs(settings) == {SF_15: [CrmKind.SALESFORCE], DEFAULT_ORG_ID: [CrmKind.HUBSPOT]}


def test_per_org_commands_take_the_single_org_or_ask() -> None:
    assert org_for_cli(load_settings(env={}), None) == DEFAULT_ORG_ID
    assert org_for_cli(_settings(), None) == DEFAULT_ORG_ID  # two CRMs, both unbound
    same = _settings(CRM_MEETINGS_SALESFORCE__ORG_ID=SF_15, CRM_MEETINGS_HUBSPOT__ENABLED="false")
    assert org_for_cli(same, None) == SF_15
    several = _settings(CRM_MEETINGS_SALESFORCE__ORG_ID=SF_15, CRM_MEETINGS_HUBSPOT__PORTAL_ID="42")
    with pytest.raises(ValidationError) as raised:
        org_for_cli(several, None)
    message = str(raised.value)
    assert f"{SF_15} (salesforce)" in message
    assert "42 (hubspot)" in message
    assert "--org" in message
    assert org_for_cli(several, "42") == "42"


def test_the_web_binds_a_caller_to_the_configured_spelling_of_the_org() -> None:
    settings = _settings(CRM_MEETINGS_SALESFORCE__ORG_ID=SF_15)
    binding = OrgBinding.from_settings(settings, [CrmKind.SALESFORCE])
    caller = CallerContext(CrmKind.SALESFORCE, SF_18, "005x", "rep@acme.example")
    assert binding.bind(caller).org_id == SF_15  # where the CLI and the sync look
    unbound = CallerContext(CrmKind.ZOHO, "777", "1", "rep@acme.example")
    assert binding.bind(unbound) == unbound  # no Zoho connection: its own rows
