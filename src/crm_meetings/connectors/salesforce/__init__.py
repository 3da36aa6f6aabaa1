"""Salesforce: meetings are Events, invitees EventRelations, history two custom objects.

Where everything lands (the setup step deploys the ``__c`` fields and objects; ``doctor``
checks that they exist):

**Event** (standard object): ``Subject``, ``StartDateTime``, ``EndDateTime``,
``Location``, ``Description``, ``WhatId`` (Account/Opportunity), ``WhoId``
(Contact/Lead), ``OwnerId`` (the organizer, when they are a known User),
``RecordTypeId``; plus Activity custom fields ``Meeting_Id__c`` (text 255, External ID,
unique: the crm-meetings meeting id; Events are created by upsert on it, so a retried
create never duplicates), ``Meeting_UID__c``, ``Meeting_Sequence__c``,
``Meeting_Status__c`` (scheduled | cancelled), ``Meeting_Timezone__c``,
``Organizer__c`` ("Name <email>"), ``Join_URL__c``, ``Provider__c``,
``Provider_Meeting_Id__c`` and ``Invitees__c`` (long text: the invitee list as JSON).
Invitees who are CRM people (Contact, Lead, User) also get an **EventRelation**
(``IsInvitee``; ``Status`` New/Accepted/Declined, read back as their answer).

**CRM_Meeting_Session__c** (custom object, one row per time a meeting ran):
``Provider_Session_Id__c`` (text 255, External ID, unique: ``provider:session id``),
``Provider__c``, ``Provider_Meeting_Id__c``, ``Event_Id__c`` (the Event's id; a text
field because Activities cannot be the parent of a lookup), ``Start__c``, ``End__c``
(date/time), ``Duration_Minutes__c``; ``Name`` is the subject and start.

**CRM_Meeting_Participant__c** (one row per attendance): ``Session__c`` (lookup to the
session), ``Attendance_Key__c`` (text 255, External ID, unique: session key, join time
and e-mail or name), ``Name``, ``Email__c``, ``Join__c``, ``Leave__c``, ``Minutes__c``.

Both are written with sObject Collections upserts on their external ids
(``PATCH composite/sobjects/{SObject}/{ExternalIdField}``, ≤ 200 records per call), so a
replay updates rows in place and never duplicates them.
"""

from crm_meetings.connectors.salesforce.connector import DEFAULT_API_VERSION, SalesforceConnector
from crm_meetings.connectors.salesforce.mapping import event_from_meeting, meeting_from_event

__all__ = [
    "DEFAULT_API_VERSION",
    "SalesforceConnector",
    "event_from_meeting",
    "meeting_from_event",
]
