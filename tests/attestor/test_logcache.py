"""The parsed event log cache: the same bytes are parsed and summarised once, different
bytes (a tampered boot) never get another log's parse, a malformed log is refused every
time, and the cache stays within its bound."""

from __future__ import annotations

import pytest

from agent.sim.boot import boot_events, encode_log
from attestor.services import logcache
from attestor.services.logcache import ParsedLogs
from identity.errors import EventLogMalformed
from identity.eventlog.summary import summarize
from identity.eventlog.tcg import parse_event_log

BANKS = ("sha256",)


def test_the_same_log_is_parsed_and_summarised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(logcache, "parse_event_log",
                        lambda data: calls.append("parse") or parse_event_log(data))
    monkeypatch.setattr(logcache, "summarize",
                        lambda log: calls.append("summary") or summarize(log))
    cache = ParsedLogs()
    data = encode_log(boot_events(), BANKS)
    first = cache.get(data).log
    assert cache.get(bytes(data)).log is first  # equal bytes, another object: a hit
    assert cache.get(data).summary() is cache.get(data).summary()
    assert calls == ["parse", "summary"]
    assert first == parse_event_log(data)


def test_a_tampered_log_gets_its_own_parse() -> None:
    cache = ParsedLogs()
    good = encode_log(boot_events(), BANKS)
    tampered = encode_log(boot_events(tamper="bootloader"), BANKS)
    assert good != tampered
    assert cache.get(good).log == parse_event_log(good)
    assert cache.get(tampered).log == parse_event_log(tampered)
    assert cache.get(tampered).summary() == summarize(parse_event_log(tampered))
    assert cache.get(good).summary() != cache.get(tampered).summary()


def test_a_malformed_log_is_refused_every_time_and_not_kept() -> None:
    cache = ParsedLogs()
    truncated = encode_log(boot_events(), BANKS)[:-7]
    for _ in range(2):
        with pytest.raises(EventLogMalformed):
            cache.get(truncated)
    assert len(cache) == 0


def test_the_cache_keeps_the_most_recently_used_within_its_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[bytes] = []
    monkeypatch.setattr(logcache, "parse_event_log",
                        lambda data: parsed.append(data) or parse_event_log(data))
    cache = ParsedLogs(size=2)
    logs = [encode_log(boot_events(tamper=t), BANKS) for t in (None, "bootloader", "cmdline")]
    cache.get(logs[0])
    cache.get(logs[1])
    cache.get(logs[0])  # now the most recent: logs[1] goes first
    cache.get(logs[2])
    assert len(cache) == 2
    cache.get(logs[0])
    cache.get(logs[1])  # evicted: parsed again
    assert parsed == [logs[0], logs[1], logs[2], logs[1]]
    with pytest.raises(ValueError):
        ParsedLogs(size=0)


def test_the_cache_stays_within_its_byte_budget_and_skips_huge_logs() -> None:
    kinds = (None, "bootloader", "cmdline", "secureboot-off", "stale-dbx", "unknown-app",
             "relabel", "after-separator", "config-after-separator")
    logs = [encode_log(boot_events(tamper=t), BANKS) for t in kinds]
    assert len(set(logs)) == len(logs)
    budget = 8 * max(len(log) for log in logs)  # every log is within an eighth of it
    assert sum(len(log) for log in logs) > budget  # together they are not
    cache = ParsedLogs(size=100, max_bytes=budget)
    for log in logs:
        cache.get(log)
    assert 0 < len(cache) < len(logs)  # the oldest went for bytes, not for count
    assert cache.held_bytes <= budget
    kept = logs[-len(cache):]
    assert cache.held_bytes == sum(len(log) for log in kept)  # the most recent ones
    small = ParsedLogs(size=10, max_bytes=len(logs[0]) * 8 - 1)  # the log is over an eighth
    small.get(logs[0])
    assert len(small) == 0 and small.held_bytes == 0
