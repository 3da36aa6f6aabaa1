"""The per-run contact memo connectors share between the history writes of one sync."""

from __future__ import annotations

from crm_meetings.connectors.base import ContactMemo, HistoryRun


def test_each_address_is_unknown_until_looked_up_whatever_its_case() -> None:
    memo = ContactMemo()
    assert memo.unknown(["Ann@Client.example", "ann@client.example", "bob@x.example"]) == [
        "ann@client.example",
        "bob@x.example",
    ]
    memo.learn(["ann@client.example", "bob@x.example"], {"ann@client.example": "901"})
    assert memo.unknown(["ANN@client.example", "bob@x.example", "eve@x.example"]) == [
        "eve@x.example"
    ]
    assert memo.ids(["Ann@Client.example", "bob@x.example"]) == {"ann@client.example": "901"}


def test_the_least_recently_used_address_is_forgotten_past_the_limit() -> None:
    memo = ContactMemo(limit=2)
    memo.learn(["a@x.example", "b@x.example"], {"a@x.example": "1", "b@x.example": "2"})
    assert memo.ids(["a@x.example"]) == {"a@x.example": "1"}  # a is now the most recent
    memo.learn(["c@x.example"], {})
    assert len(memo) == 2
    assert memo.unknown(["a@x.example", "b@x.example", "c@x.example"]) == ["b@x.example"]


def test_a_run_starts_with_an_empty_memo_of_its_own() -> None:
    first, second = HistoryRun(), HistoryRun(checked=True)
    first.contacts.learn(["a@x.example"], {"a@x.example": "1"})
    assert len(second.contacts) == 0
    assert not first.checked
