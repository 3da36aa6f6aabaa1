"""Token paging as a small loop: ask for a page, yield its items, follow the next token.

Zoom answers lists with ``next_page_token`` (empty when done). A token seen twice means the
vendor is looping; we stop with a :class:`~crm_meetings.errors.RemoteError` rather than
paging forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from crm_meetings.errors import RemoteError

__all__ = ["token_pages"]

T = TypeVar("T")


def token_pages(
    fetch: Callable[[str | None], tuple[Sequence[T], str | None]], *, vendor: str
) -> Iterator[T]:
    """Every item of every page; ``fetch(token)`` returns ``(items, next_token)``."""
    seen: set[str] = set()
    token: str | None = None
    while True:
        items, following = fetch(token)
        yield from items
        if not following:
            return
        if following in seen:
            raise RemoteError(f"the page token {following!r} came back twice", vendor=vendor)
        seen.add(following)
        token = following
