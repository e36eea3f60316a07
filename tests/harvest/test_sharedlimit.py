"""Politeness shared by processes: SharedHostLimiter, RobotsCache with a shared folder, a picklable Resolver.

The single-process behaviours are run against HostLimiter too, so the two limiters are held to one contract.
"""

from __future__ import annotations

import multiprocessing
import pickle
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

import pytest

from harvest.fetch import Resolver, RobotsCache
from harvest.fetch.ratelimit import HostLimiter, HostLimits, HostPaused, LimiterTimeout
from harvest.fetch.sharedlimit import SharedHostLimiter
from storage.parallel import pool_context

LimiterFactory = Callable[..., HostLimits]
LIMITERS: dict[str, LimiterFactory] = {"threads": HostLimiter, "shared": SharedHostLimiter}
ROBOTS = b"User-agent: *\nDisallow: /private/\n"


@pytest.fixture(params=list(LIMITERS))
def make_limiter(request: pytest.FixtureRequest) -> LimiterFactory:
    return LIMITERS[request.param]


def soon(seconds: float) -> float:
    return time.monotonic() + seconds


# -- the HostLimiter contract, in one process ----------------------------------------------------------------------


def test_concurrency_is_capped_per_host(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(0, 1, 2)
    lock = threading.Lock()
    held = peak = 0

    def hold() -> None:
        nonlocal held, peak
        for _ in range(3):
            with limiter.slot("a.test", soon(10)):
                with lock:
                    held += 1
                    peak = max(peak, held)
                time.sleep(0.03)
                with lock:
                    held -= 1

    with ThreadPoolExecutor(6) as pool:
        for future in [pool.submit(hold) for _ in range(6)]:
            future.result()
    assert peak == 2


def test_a_full_host_times_out_and_leaves_other_hosts_alone(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(0, 1, 2)
    with limiter.slot("a.test", soon(1)), limiter.slot("a.test", soon(1)):
        started = time.monotonic()
        with pytest.raises(LimiterTimeout) as caught, limiter.slot("a.test", soon(0.1)):
            pass
        assert caught.value.kind == "timeout"
        assert 0.08 <= time.monotonic() - started < 1.0
        with limiter.slot("b.test", soon(0.1)) as waited:  # another host has its own slots
            assert waited < 0.05
    with limiter.slot("a.test", soon(0.1)) as waited:  # given back on leaving the block
        assert waited < 0.05


def test_token_bucket_spaces_requests(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(20, 1, 4)
    started = time.monotonic()
    waits = []
    for _ in range(6):
        with limiter.slot("a.test", soon(5)) as waited:
            waits.append(waited)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.0  # 5 intervals of 1/20 s after the first token
    assert waits[0] < 0.02 and all(w >= 0.03 for w in waits[1:])

    bursty = make_limiter(20, 3, 4)
    started = time.monotonic()
    for _ in range(3):
        with bursty.slot("a.test", soon(5)):
            pass
    assert time.monotonic() - started < 0.04  # a burst of 3 goes at once
    with bursty.slot("a.test", soon(5)) as waited:
        assert waited >= 0.03


def test_a_rate_that_cannot_be_met_before_the_deadline_is_a_timeout(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(1, 1, 4)
    with limiter.slot("a.test", soon(1)):
        pass
    with pytest.raises(LimiterTimeout) as caught, limiter.slot("a.test", soon(0.2)):
        pass
    assert caught.value.kind == "timeout"


def test_hold_off_delays_the_host_and_fails_fast_past_the_deadline(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(0, 1, 4)
    limiter.hold_off("a.test", 0.3)
    with limiter.slot("b.test", soon(1)) as waited:
        assert waited < 0.05  # only the host that sent Retry-After waits
    with limiter.slot("a.test", soon(2)) as waited:
        assert 0.25 <= waited < 1.0

    limiter.hold_off("a.test", 5)
    limiter.hold_off("a.test", 0.1)  # a shorter hold does not shorten the longer one
    started = time.monotonic()
    with pytest.raises(LimiterTimeout) as caught, limiter.slot("a.test", soon(0.5)):
        pass
    assert caught.value.kind == "rate_limited"
    assert time.monotonic() - started < 0.2  # known at once: no waiting for the deadline


def test_failures_in_a_row_pause_the_host(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(0, 1, 4, failure_limit=2, pause=0.4)
    limiter.record("a.test", ok=False)
    limiter.record("a.test", ok=True)  # resets the count
    limiter.record("a.test", ok=False)
    with limiter.slot("a.test", soon(1)):
        pass
    limiter.record("a.test", ok=False)
    with pytest.raises(HostPaused), limiter.slot("a.test", soon(1)):
        pass
    with limiter.slot("b.test", soon(1)):  # other hosts are not paused
        pass
    time.sleep(0.45)
    with limiter.slot("a.test", soon(1)) as waited:
        assert waited < 0.05


def test_no_failure_limit_never_pauses(make_limiter: LimiterFactory) -> None:
    limiter = make_limiter(0, 1, 4, failure_limit=0)
    for _ in range(50):
        limiter.record("a.test", ok=False)
    with limiter.slot("a.test", soon(1)):
        pass


# -- the shared table ----------------------------------------------------------------------------------------------


def test_a_small_table_reuses_records_at_rest() -> None:
    limiter = SharedHostLimiter(0, 1, 1, failure_limit=3, slots=4)
    for round_ in range(3):
        for n in range(100):
            with limiter.slot(f"h{n}.test", soon(0.05)) as waited:
                assert waited < 0.05, (round_, n)
            limiter.record(f"h{n}.test", ok=True)

    # A busy host keeps its record (and its limit) while many hosts pass through the other slots.
    with limiter.slot("busy.test", soon(1)):
        for n in range(50):
            with limiter.slot(f"other{n}.test", soon(0.05)):
                pass
        with pytest.raises(LimiterTimeout), limiter.slot("busy.test", soon(0.05)):
            pass

    # A record that is not at rest (failures counted) is not taken by another host either.
    limiter.record("failing.test", ok=False)
    limiter.record("failing.test", ok=False)
    for n in range(50):
        with limiter.slot(f"more{n}.test", soon(0.05)):
            pass
    limiter.record("failing.test", ok=False)  # the third in a row: paused
    with pytest.raises(HostPaused), limiter.slot("failing.test", soon(0.05)):
        pass


def test_a_full_table_shares_records_stricter_never_looser() -> None:
    limiter = SharedHostLimiter(0, 1, 1, slots=4)
    with ExitStack() as busy:
        for n in range(4):
            busy.enter_context(limiter.slot(f"busy{n}.test", soon(1)))
        # Every record is in use: a fifth host shares one, whose only slot is taken.
        with pytest.raises(LimiterTimeout), limiter.slot("fifth.test", soon(0.1)):
            pass
    with limiter.slot("fifth.test", soon(0.1)) as waited:  # once the others rest, it has a record of its own
        assert waited < 0.05


def test_the_limiter_pickles_only_to_start_a_process() -> None:
    limiter = SharedHostLimiter(0, 1, 1, slots=8, context=multiprocessing.get_context("spawn"))
    with pytest.raises(RuntimeError):
        pickle.dumps(limiter)


# -- across processes ----------------------------------------------------------------------------------------------


def hold_slots(limiter: SharedHostLimiter, held: Any, peak: Any, threads: int, rounds: int) -> None:
    """Child process: `threads` threads each hold a slot of one host `rounds` times; count slots held."""

    def work() -> None:
        for _ in range(rounds):
            with limiter.slot("shared.test", soon(20)):
                with held.get_lock():
                    held.value += 1
                    peak.value = max(peak.value, held.value)
                time.sleep(0.02)
                with held.get_lock():
                    held.value -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


@pytest.mark.parametrize("method", [None, "spawn"], ids=["pool_context", "spawn"])
def test_concurrency_holds_across_processes(method: str | None) -> None:
    context: BaseContext = pool_context() if method is None else multiprocessing.get_context(method)
    limiter = SharedHostLimiter(0, 1, 2, slots=64, context=context)
    held, peak = context.Value("i", 0), context.Value("i", 0)
    children = [context.Process(target=hold_slots, args=(limiter, held, peak, 3, 4)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
    assert [child.exitcode for child in children] == [0, 0]
    # Six threads in two processes want the host; one shared budget lets two in (per-process ones: four).
    assert peak.value == 2 and held.value == 0


# -- robots.txt shared by processes --------------------------------------------------------------------------------


class CountingFetch:
    """A robots.txt fetch that answers `answers[url]` (default ROBOTS, 200) and counts calls per URL."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: Counter[str] = Counter()
        self.answers: dict[str, tuple[int | None, bytes | None]] = {}
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self, url: str) -> tuple[int | None, bytes | None]:
        with self._lock:
            self.calls[url] += 1
        time.sleep(self.delay)
        return self.answers.get(url, (200, ROBOTS))


def test_caches_sharing_a_folder_fetch_each_origin_once(tmp_path: Path) -> None:
    fetch = CountingFetch(delay=0.05)
    caches = [RobotsCache(fetch, "GleanerBot/1.0", shared_dir=tmp_path) for _ in range(2)]
    origins = ["http://a.test", "http://b.test:8080", "https://a.test"]
    urls = [f"{o}/{d}/{n}.jpg" for o in origins for d in ("img", "private") for n in range(4)]

    def ask(index: int) -> tuple[str, bool]:
        url = urls[index % len(urls)]
        return url, caches[index % 2].allowed(url)

    with ThreadPoolExecutor(8) as pool:  # both caches, many threads, every origin at once
        answers = list(pool.map(ask, range(4 * len(urls))))
    assert all(allowed == ("/private/" not in url) for url, allowed in answers)
    assert fetch.calls == Counter({f"{o}/robots.txt": 1 for o in origins})

    later = RobotsCache(fetch, "GleanerBot/1.0", shared_dir=tmp_path)  # a worker that starts later
    assert not later.allowed("http://a.test/private/x") and later.allowed("http://a.test/img/x")
    assert sum(fetch.calls.values()) == 3


def test_an_unavailable_robots_txt_is_shared_only_for_retry_after(tmp_path: Path) -> None:
    fetch = CountingFetch()
    fetch.answers["http://a.test/robots.txt"] = (503, None)
    fetch.answers["http://b.test/robots.txt"] = (None, None)
    fetch.answers["http://c.test/robots.txt"] = (404, None)
    first, second = (RobotsCache(fetch, "GleanerBot", retry_after=0.3, shared_dir=tmp_path) for _ in range(2))

    for cache in (first, second):
        a, b, c = (cache.rules_for(f"http://{h}.test") for h in "abc")
        assert a.disallow_all and a.unavailable == "http_5xx" and "503" in a.note
        assert b.disallow_all and b.unavailable == "connection"
        assert c.allow_all and c.unavailable is None
    assert sum(fetch.calls.values()) == 3

    time.sleep(0.35)
    fetch.answers["http://a.test/robots.txt"] = (200, ROBOTS)
    assert second.allowed("http://a.test/img/x")  # the 5xx answer expired: asked again
    assert not first.allowed("http://a.test/private/x")  # and the new answer is shared
    assert first.rules_for("http://c.test").allow_all  # a 4xx is remembered for good
    assert fetch.calls == Counter(
        {"http://a.test/robots.txt": 2, "http://b.test/robots.txt": 1, "http://c.test/robots.txt": 1}
    )
    assert second.rules_for("http://b.test").unavailable == "connection"  # expired too: asked again
    assert fetch.calls["http://b.test/robots.txt"] == 2


def robots_child(folder: Path, log: Path, start: Any) -> None:
    """Child process: ask two origins' rules through a RobotsCache on the shared folder; log every fetch."""

    def fetch(url: str) -> tuple[int | None, bytes | None]:
        with open(log, "a") as handle:
            handle.write(url + "\n")
        time.sleep(0.1)  # the other process asks while this fetch is in progress
        return 200, ROBOTS

    cache = RobotsCache(fetch, "GleanerBot", shared_dir=folder)
    start.wait(10)
    for origin in ("http://a.test", "http://b.test"):
        if cache.allowed(f"{origin}/private/x") or not cache.allowed(f"{origin}/img/x"):
            raise SystemExit(3)


def test_a_robots_txt_whose_body_could_not_be_read_stays_disallowed_for_every_cache(tmp_path: Path) -> None:
    """A 200 whose body was cut off (too large, timed out) must not reach other processes as an empty file."""
    calls: list[str] = []

    def fetch(url: str) -> tuple[int | None, bytes | None]:
        calls.append(url)
        return 200, None

    first, second = (RobotsCache(fetch, "GleanerBot", shared_dir=tmp_path) for _ in range(2))
    assert not first.allowed("http://cut.test/a.jpg")
    assert not second.allowed("http://cut.test/a.jpg")
    assert len(calls) == 1


def test_two_processes_fetch_robots_txt_once_per_origin(tmp_path: Path) -> None:
    context = pool_context()
    log = tmp_path / "fetches.log"
    start = context.Event()
    children = [context.Process(target=robots_child, args=(tmp_path, log, start)) for _ in range(2)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(20)
    assert [child.exitcode for child in children] == [0, 0]
    assert sorted(log.read_text().split()) == ["http://a.test/robots.txt", "http://b.test/robots.txt"]


# -- the resolver travels to worker processes ----------------------------------------------------------------------


LOOKUPS: Counter[str] = Counter()


def counting_resolve(host: str) -> list[str]:
    LOOKUPS[host] += 1
    return ["192.0.2.7"]


def test_resolver_pickles_settings_not_cache() -> None:
    LOOKUPS.clear()
    resolver = Resolver(ttl=7.0, overrides={"Photos.Example": ["127.0.0.1", "::1"]}, resolve=counting_resolve)
    assert resolver.resolve("cdn.test") == ["192.0.2.7"]
    assert resolver.resolve("cdn.test") == ["192.0.2.7"] and LOOKUPS["cdn.test"] == 1  # cached
    with resolver._lock:  # a lock held while pickling does not travel either
        copy = pickle.loads(pickle.dumps(resolver))
    assert copy.ttl == 7.0 and copy.overrides == {"photos.example": ["127.0.0.1", "::1"]}
    assert copy.resolve("PHOTOS.example.") == ["127.0.0.1", "::1"]
    assert copy._cache == {} and copy._lock is not resolver._lock
    assert copy.resolve("cdn.test") == ["192.0.2.7"] and LOOKUPS["cdn.test"] == 2  # a fresh cache asks again
    assert copy.resolve("cdn.test") == ["192.0.2.7"] and LOOKUPS["cdn.test"] == 2
    assert pickle.loads(pickle.dumps(Resolver())).resolve("127.0.0.1") == ["127.0.0.1"]  # the system resolver
