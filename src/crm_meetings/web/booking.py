"""The public booking page, the owner's approval links, and the owner's queue in the API.

- ``GET /book/{owner}``: a small form (e-mail, name, message). ``POST /book/{owner}``
  takes the same fields as JSON (answers JSON) or as a form (answers the page), and hands
  them to :meth:`~crm_meetings.routing.requests.TrustRepository.receive` as a web request
  (``cc=None``: the in-copy rule is for e-mail). A trusted requester is offered the
  owner's free slots at once (and gets them by e-mail, the owner in copy); an untrusted
  one waits for the owner's approval. Requests are limited per client address.
- ``GET /approvals/{token}``: the owner's approve / decline link
  (:meth:`~crm_meetings.routing.requests.TrustRepository.resolve`); an approved request is
  offered slots. Expired, reused or tampered links answer 403, an already answered
  request 409, as a page for a browser.
- ``GET /book/choose/{token}``: the offered slots, fresh, each a button; ``POST`` the
  same with ``{"start": …}`` (JSON or form) schedules the request at that time through the
  schedule action, the owner hosting (:func:`crm_meetings.routing.scheduling
  .choose_request_slot`), and answers with the meeting; a time taken meanwhile answers
  409 ``slot_taken`` with fresh ``slots``. The token is in the offer (``choose_url``, and
  the offer e-mail's link), signed, valid while the slots are offered.
- ``GET /book/rotation/{rotation_id}``: a rotation's public booking link. The rotation's
  rule picks the host now (the explanation is shown, as JSON or a page), and the host's
  free slots are offered with a signed ``token`` naming (rotation, host). ``POST`` with
  ``{email, name, message, start, token}`` schedules the host at ``start`` through the
  schedule action, which counts the booking in its commit and stores the explanation
  (:func:`crm_meetings.routing.scheduling.choose_rotation_slot`); a repeat of the same
  submission replays, a taken slot is 409 ``slot_taken`` with the host's fresh slots. No
  trust circle applies: publishing the link is the org's choice. Rate-limited like
  ``/book/{owner}``.
- ``GET /api/v1/booking-requests``: the caller's pending requests, in their org.

Scheduling needs the actions' context for a host: whoever builds the app calls
:func:`use_host_contexts` (``crm-meetings web serve`` does, with :func:`host_contexts`);
without it, choosing a slot answers 503 ``booking_unavailable``.

Links are signed with the key ``crm-meetings rotation trust`` derives from
``[web].session_secret`` (:func:`crm_meetings.commands.rotation.assistant_config`), so
the links the CLI's listener mails and the ones this app mails are the same.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlsplit

import pydantic
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from crm_meetings.actions import ActionContext
from crm_meetings.clients import store_org
from crm_meetings.commands.rotation import assistant_config
from crm_meetings.config import Settings
from crm_meetings.errors import ConflictError, CrmMeetingsError, NotFoundError, ValidationError
from crm_meetings.model import Invitee, Person, normalize_email
from crm_meetings.routing.requests import (
    CHOICE,
    AssistantConfig,
    BookingRequest,
    RequestStatus,
    TrustRepository,
    owner_slots,
)
from crm_meetings.routing.rotation import Explanation
from crm_meetings.routing.rotations import RotationRepository, explanation_to_json
from crm_meetings.routing.scheduling import (
    HostContext,
    Scheduled,
    SlotTakenError,
    choose_request_slot,
    choose_rotation_slot,
)
from crm_meetings.routing.slots import Slot
from crm_meetings.routing.tables import RotationRow, TrustCircleRow
from crm_meetings.routing.trust import sign_link, verify_link
from crm_meetings.store import Clock, Store
from crm_meetings.web.deps import Caller, State, WebState, web_state
from crm_meetings.web.wiring import Clients, settings_sender

__all__ = [
    "BookingIn",
    "BookingOut",
    "BookingRequestOut",
    "BookingUnavailableError",
    "ChoiceIn",
    "RateLimiter",
    "ScheduledOut",
    "TooManyRequestsError",
    "api",
    "booking_config",
    "host_contexts",
    "public",
    "use_host_contexts",
]

public = APIRouter(tags=["booking"])
api = APIRouter(prefix="/api/v1", tags=["booking"])

Owner = Annotated[str, Path(min_length=3, max_length=320)]
Token = Annotated[str, Path(min_length=1, max_length=2048)]
WAITING: Final = "Your request is waiting for the owner's approval; you will hear back by e-mail."


class TooManyRequestsError(CrmMeetingsError):
    code = "too_many_requests"
    http_status = 429
    default_hint = "Wait a few minutes and send the request again."


class RateLimiter:
    """At most ``limit`` hits per key in a sliding ``window`` (seconds, monotonic)."""

    def __init__(self, limit: int = 10, window: float = 600.0) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= moment - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                raise TooManyRequestsError(
                    "Too many booking requests from your address.",
                    hint=f"Wait {int(self.window // 60)} minutes and try again.",
                )
            hits.append(moment)
            if len(self._hits) > 10_000:  # forget addresses idle for a whole window
                for stale in [k for k, v in self._hits.items() if v[-1] <= moment - self.window]:
                    del self._hits[stale]


class BookingUnavailableError(CrmMeetingsError):
    code = "booking_unavailable"
    http_status = 503
    default_hint = "Ask the owner to pick the time with you; the server cannot schedule now."


def use_host_contexts(app: FastAPI, contexts: HostContext) -> None:
    """Let the booking pages schedule: ``contexts(org_id, host)`` gives the actions'
    context acting as ``host``."""
    app.state.booking_hosts = contexts


def host_contexts(
    settings: Settings, store: Store, clients: Clients, *, clock: Clock
) -> HostContext:
    """Hosts act on the CRM whose data lives in the booking's org
    (:func:`~crm_meetings.clients.store_org`; else the first configured one) and the
    default conferencing provider (a meeting's own provider for any change to it, every
    configured one being known), sending as the panel's actions do."""
    sender = settings_sender(settings)

    def context(org_id: str, host: Person) -> ActionContext:
        if not clients.crms:
            raise BookingUnavailableError("No CRM is configured, so no meeting can be saved.")
        crms = sorted(clients.crms)
        crm = next((c for c in crms if store_org(settings, c) == org_id), crms[0])
        return ActionContext(
            store=store, connector=clients.connector(crm),
            provider=clients.provider(clients.default_provider),
            providers=clients.providers_by_name(), actor=host, sender=sender,
            clock=clock, org_id=org_id,
        )  # fmt: skip

    return context


def _hosts(request: Request) -> HostContext:
    found: HostContext | None = getattr(request.app.state, "booking_hosts", None)
    if found is None:
        raise BookingUnavailableError("This server does not schedule from the booking page.")
    return found


def _limiter(request: Request) -> RateLimiter:
    found = getattr(request.app.state, "booking_limiter", None)
    if not isinstance(found, RateLimiter):
        found = RateLimiter()
        request.app.state.booking_limiter = found
    return found


def booking_config(settings: Settings) -> AssistantConfig:
    """The assistant as the CLI's ``rotation trust`` commands make it: the From is
    ``[smtp] from_address`` (else ``assistant@`` the public host), links signed with the
    key derived from ``[web].session_secret``."""
    if settings.smtp.from_address is not None:
        address = str(settings.smtp.from_address)
    else:
        host = urlsplit(str(settings.web.public_url or "")).hostname or "localhost.localdomain"
        address = f"assistant@{host}"
    return assistant_config(settings, address)


# --- schemas --------------------------------------------------------------------------


class BookingIn(BaseModel):
    """What the booking page asks for; the address is the requester's identity."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str = Field(min_length=3, max_length=320)
    name: str = Field(default="", max_length=255)
    message: str = Field(default="", max_length=5000)


class SlotOut(BaseModel):
    start: datetime
    end: datetime


class BookingOut(BaseModel):
    request_id: str
    status: str
    message: str
    slots: list[SlotOut]
    choose_url: str | None = None  # POST {"start": …} there to schedule one of ``slots``


class ChoiceIn(BaseModel):
    """The offered slot the requester picks, by its start."""

    model_config = ConfigDict(extra="forbid")

    start: datetime


class ScheduledOut(BaseModel):
    status: str
    message: str
    meeting_id: str
    host: str
    start: datetime
    end: datetime
    join_url: str | None
    replayed: bool

    @classmethod
    def of(cls, done: Scheduled, message: str) -> ScheduledOut:
        meeting = done.result.meeting
        return cls(
            status="scheduled", message=message, meeting_id=meeting.id, host=done.host,
            start=meeting.start, end=meeting.end, join_url=meeting.join_url,
            replayed=done.result.replayed,
        )  # fmt: skip


class BookingRequestOut(BaseModel):
    id: str
    requester: str
    requester_name: str
    channel: str
    subject: str
    body: str
    status: str
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, r: BookingRequest) -> BookingRequestOut:
        return cls(
            id=r.id, requester=r.requester, requester_name=r.requester_name,
            channel=r.channel, subject=r.subject, body=r.body, status=r.status.value,
            created_at=r.created_at, expires_at=r.expires_at,
        )  # fmt: skip


# --- the public page ------------------------------------------------------------------


def _page(state: WebState, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
    return state.templates.TemplateResponse(request, name, ctx, status_code=status)


@public.get("/book/{owner}", response_class=HTMLResponse, include_in_schema=False)
def booking_page(owner: Owner, request: Request, state: State) -> Response:
    """The booking form for ``owner``."""
    email = normalize_email(owner, "owner")
    with state.store.transaction() as uow:
        uow.repository(TrustRepository).circle(email)  # 404 for an owner who never signed up
    return _page(state, request, "book.html", owner=email, outcome=None)


def _book(
    state: WebState, owner: str, data: BookingIn
) -> tuple[BookingRequest, list[Slot], str | None]:
    config = booking_config(state.settings)
    with state.store.transaction() as uow:
        trust = uow.repository(TrustRepository)
        first_line = data.message.splitlines()[0][:200] if data.message else ""
        booked = trust.receive(
            owner, data.email, config=config, requester_name=data.name,
            subject=first_line or "Meeting request from the booking page",
            body=data.message, cc=None,
        )  # fmt: skip
        slots = trust.offer_slots(booked.id, config=config) if _offered(booked) else []
    link = config.choice_link(booked.id, state.clock()) if slots else None
    return booked, slots, link


def _offered(booked: BookingRequest) -> bool:
    return booked.status in (RequestStatus.ACCEPTED, RequestStatus.APPROVED)


def _outcome(booked: BookingRequest, slots: list[Slot], link: str | None = None) -> BookingOut:
    if not _offered(booked):
        message = WAITING
    elif slots:
        message = "Here are the owner's free times; they were also sent to you by e-mail."
    else:
        message = "The owner has no free time in the coming days; you will hear back by e-mail."
    return BookingOut(
        request_id=booked.id, status=booked.status.value, message=message,
        slots=[SlotOut(start=a, end=b) for a, b in slots], choose_url=link,
    )  # fmt: skip


_FORMS: Final = ("application/x-www-form-urlencoded", "multipart/form-data")


@public.post(
    "/book/{owner}",
    response_model=BookingOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BookingIn.model_json_schema()}},
        }
    },
)
async def book(owner: Owner, request: Request) -> Response:
    """Ask ``owner`` for a meeting (JSON in, JSON out; a form post gets the page back)."""
    state = web_state(request)
    client = request.client.host if request.client else "unknown"
    _limiter(request).hit(client)
    as_form, data = await _read(request, BookingIn)
    email = normalize_email(owner, "owner")
    data = data.model_copy(update={"email": normalize_email(data.email, "email")})
    booked, slots, link = await run_in_threadpool(_book, state, email, data)
    outcome = _outcome(booked, slots, link)
    if as_form:
        return _page(state, request, "book.html", owner=email, outcome=outcome)
    return JSONResponse(outcome.model_dump(mode="json"))


M = TypeVar("M", bound=BaseModel)


async def _read(request: Request, model: type[M]) -> tuple[bool, M]:
    """Whether the body is a form, and the body validated as ``model`` (JSON or form)."""
    as_form = request.headers.get("content-type", "").startswith(_FORMS)
    raw: Any
    if as_form:
        raw = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    else:
        try:
            raw = await request.json()
        except ValueError:
            raw = None
    try:
        return as_form, model.model_validate(raw)
    except pydantic.ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False)) from None


# --- choosing an offered slot ---------------------------------------------------------


def _chosen_request(state: WebState, token: str) -> tuple[AssistantConfig, BookingRequest]:
    config = booking_config(state.settings)
    request_id = verify_link(config.secret, CHOICE, token, now=state.clock())
    with state.store.transaction() as uow:
        return config, uow.repository(TrustRepository).get(request_id)


def _fresh(state: WebState, owner: str, config: AssistantConfig) -> list[Slot]:
    with state.store.transaction() as uow:
        return owner_slots(uow, owner, config, state.clock())


@public.get("/book/choose/{token}", response_class=HTMLResponse, include_in_schema=False)
def choice_page(token: Token, request: Request, state: State) -> Response:
    """The offered slots, fresh, to pick one."""
    config, found = _chosen_request(state, token)
    slots = _fresh(state, found.owner, config)
    return _page(state, request, "choose.html", owner=found.owner, slots=slots,
                 zone=config.zone, done=None, error=None)  # fmt: skip


def _choose(state: WebState, request: Request, token: str, start: datetime) -> Scheduled:
    config, found = _chosen_request(state, token)
    hosts = _hosts(request)
    return choose_request_slot(state.store, hosts, found.id, start, config=config)


@public.post("/book/choose/{token}", response_model=ScheduledOut)
async def choose(token: Token, request: Request) -> Response:
    """Schedule the request at one of the offered times (JSON in and out; a form post gets
    the page back). A time taken meanwhile: 409 ``slot_taken`` with fresh ``slots``."""
    state = web_state(request)
    _limiter(request).hit(request.client.host if request.client else "unknown")
    as_form, data = await _read(request, ChoiceIn)
    try:
        done = await run_in_threadpool(_choose, state, request, token, data.start)
    except SlotTakenError as taken:
        if not as_form:
            raise
        config, found = _chosen_request(state, token)
        return _page(state, request, "choose.html", status=409, owner=found.owner,
                     slots=taken.slots, zone=config.zone, done=None, error=taken)  # fmt: skip
    out = ScheduledOut.of(done, "Your meeting is scheduled; the invitation is on its way.")
    if as_form:
        return _page(state, request, "choose.html", owner=done.host, slots=[], zone="UTC",
                     done=out, error=None)  # fmt: skip
    return JSONResponse(out.model_dump(mode="json"))


# --- a rotation's booking link -------------------------------------------------------

RotationId = Annotated[str, Path(min_length=1, max_length=255)]
#: the purpose of the token binding a rotation page to the host it showed
HOST_LINK: Final = "rotation host"


class RotationOfferOut(BaseModel):
    rotation: str
    host: str
    explanation: dict[str, Any]
    slots: list[SlotOut]
    token: str  # send it back with the chosen ``start``


class RotationBookingIn(BookingIn):
    start: datetime
    token: str = Field(min_length=1, max_length=2048)


def _rotation_org(state: WebState, rotation_id: str) -> tuple[str, str]:
    """(org id, name) of a rotation; 404 when there is none."""
    with state.store.transaction() as uow:
        found = uow.session.execute(
            sa.select(RotationRow.org_id, RotationRow.name).where(RotationRow.id == rotation_id)
        ).first()
    if found is None:
        raise NotFoundError(f"Rotation {rotation_id} does not exist", hint="Check the link.")
    return found[0], found[1]


def _rotation_offer(state: WebState, rotation_id: str) -> tuple[RotationOfferOut, str]:
    """Who the rotation picks now, why, their free slots and the token; and its name."""
    _, name = _rotation_org(state, rotation_id)
    config = booking_config(state.settings)
    now = state.clock()
    with state.store.transaction() as uow:
        explanation: Explanation = uow.repository(RotationRepository).suggest(
            rotation_id, now, zone=config.zone
        )
        if explanation.chosen is None:
            raise ConflictError(
                f"Nobody in rotation {name!r} can take a meeting now",
                hint="Try again later, or ask the team directly.",
            )
        slots = owner_slots(uow, explanation.chosen, config, now)
    valid = timedelta(days=config.offer_days)
    token = sign_link(
        config.secret, HOST_LINK, f"{rotation_id} {explanation.chosen}", now=now, valid_for=valid
    )
    offer = RotationOfferOut(
        rotation=rotation_id, host=explanation.chosen,
        explanation=explanation_to_json(explanation),
        slots=[SlotOut(start=a, end=b) for a, b in slots], token=token,
    )  # fmt: skip
    return offer, name


@public.get("/book/rotation/{rotation_id}", response_model=RotationOfferOut)
def rotation_page(rotation_id: RotationId, request: Request, state: State) -> Response:
    """Who the rotation picks now, why, and their free slots (JSON, or the page)."""
    offer, name = _rotation_offer(state, rotation_id)
    if "text/html" in request.headers.get("accept", ""):
        return _page(state, request, "rotation.html", offer=offer, title=name, done=None,
                     error=None)  # fmt: skip
    return JSONResponse(offer.model_dump(mode="json"))


def _book_rotation(
    state: WebState, request: Request, rotation_id: str, data: RotationBookingIn
) -> Scheduled:
    org_id, name = _rotation_org(state, rotation_id)
    config = booking_config(state.settings)
    subject = verify_link(config.secret, HOST_LINK, data.token, now=state.clock())
    bound, _, host = subject.partition(" ")
    if bound != rotation_id:
        raise ValidationError("token", "belongs to another rotation's page", hint="Reload it.")
    first_line = data.message.splitlines()[0][:200] if data.message else ""
    return choose_rotation_slot(
        state.store, _hosts(request), org_id=org_id, rotation_id=rotation_id, host=host,
        requester=Invitee(data.email, data.name), start=data.start,
        subject=first_line or f"Meeting booked through {name}", message=data.message,
        config=config,
    )  # fmt: skip


@public.post(
    "/book/rotation/{rotation_id}",
    response_model=ScheduledOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RotationBookingIn.model_json_schema()}},
        }
    },
)
async def book_rotation(rotation_id: RotationId, request: Request) -> Response:
    """Book the host the page showed at one of their free times (JSON in and out; a form
    post gets the page back). A time taken meanwhile: 409 ``slot_taken`` with fresh
    ``slots``."""
    state = web_state(request)
    _limiter(request).hit(request.client.host if request.client else "unknown")
    as_form, data = await _read(request, RotationBookingIn)
    data = data.model_copy(update={"email": normalize_email(data.email, "email")})
    try:
        done = await run_in_threadpool(_book_rotation, state, request, rotation_id, data)
    except SlotTakenError as taken:
        if not as_form:
            raise
        offer, name = await run_in_threadpool(_rotation_offer, state, rotation_id)
        return _page(state, request, "rotation.html", status=409, offer=offer, title=name,
                     done=None, error=taken)  # fmt: skip
    out = ScheduledOut.of(done, "Your meeting is scheduled; the invitation is on its way.")
    if as_form:
        return _page(state, request, "rotation.html", offer=None, title=rotation_id, done=out,
                     error=None)  # fmt: skip
    return JSONResponse(out.model_dump(mode="json"))


# --- approval links -------------------------------------------------------------------


def _resolve(state: WebState, token: str) -> tuple[BookingRequest, list[Slot]]:
    config = booking_config(state.settings)
    with state.store.transaction() as uow:
        trust = uow.repository(TrustRepository)
        resolved = trust.resolve(token, secret=config.secret)
        slots = trust.offer_slots(resolved.id, config=config) if _offered(resolved) else []
    return resolved, slots


@public.get("/approvals/{token}", response_class=HTMLResponse)
def approval(token: Token, request: Request, state: State) -> Response:
    """Follow an approve / decline link from the owner's e-mail (single use)."""
    resolved, slots = _resolve(state, token)
    return _page(state, request, "approval.html", booking=resolved, slots=slots)


# --- the owner's queue ----------------------------------------------------------------


@api.get("/booking-requests", response_model=list[BookingRequestOut])
def booking_requests(caller: Caller, state: State) -> list[BookingRequestOut]:
    """The caller's booking requests waiting for their approval, oldest first."""
    owner = caller.actor().email
    with state.store.transaction() as uow:
        org = uow.session.scalar(
            sa.select(TrustCircleRow.org_id).where(TrustCircleRow.owner == owner)
        )
        if org != caller.org_id:  # no circle, or a circle in another org
            return []
        found = uow.repository(TrustRepository).queue(owner)
    return [BookingRequestOut.of(r) for r in found]
