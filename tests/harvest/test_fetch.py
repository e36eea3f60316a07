"""The fetch layer against the fixture site: every fault route, robots.txt, the SSRF guard, per-host limits."""

from __future__ import annotations

import itertools
import shutil
import socket
import ssl
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from harvest.fetch import (
    Fetcher,
    FetchPolicy,
    FetchResult,
    Resolver,
    RobotsCache,
    forbidden_reason,
    parse_retry_after,
    parse_robots,
)
from harvest.fetch.content import noai_directive, sniff_image
from tests.support.servers import free_port
from tests.support.site import GIF_PIXEL, Response, Site

# Loopback is the fixture site's address: tests allow it explicitly, and keep retries quick.
LOCAL = FetchPolicy(allow_private=True, per_host_rate=0, backoff_base=0.05, backoff_max=0.2)


def fetch(site: Site, path: str, policy: FetchPolicy = LOCAL, kind: str = "image", **fetcher: object) -> FetchResult:
    with Fetcher(policy, **fetcher) as fetcher_:  # type: ignore[arg-type]
        return fetcher_.fetch(site.url(path), kind=kind)  # type: ignore[arg-type]


def expect_error(result: FetchResult, kind: str) -> None:
    assert not result.ok, result
    assert result.error_kind == kind, result
    assert result.data is None and result.error


# -- plain fetches and fault routes ---------------------------------------------------------------------------


def test_photo_with_honest_user_agent(fresh_site: Site) -> None:
    name = fresh_site.photo_names[0]
    result = fetch(fresh_site, f"/img/{name}")
    assert result.ok and result.error_kind is None
    assert result.data == fresh_site.photo(name)
    assert (result.status, result.content_type, result.attempts) == (200, "image/jpeg", 1)
    assert result.final_url == result.url == fresh_site.url(f"/img/{name}")
    assert result.fetched_at.tzinfo is not None and result.elapsed >= 0
    agents = {hit.user_agent for hit in fresh_site.log}
    assert agents == {FetchPolicy().user_agent}
    assert all("GleanerBot" in a and "+https://" in a for a in agents if a)


def test_custom_user_agent_and_referer(fresh_site: Site) -> None:
    policy = FetchPolicy(allow_private=True, user_agent="MyCollector/2.0 (+mailto:me@example.org)")
    with Fetcher(policy) as fetcher:
        assert fetcher.fetch(fresh_site.url("/fault/pixel.gif"), kind="image", referer="http://x.example/p").ok
    hit = next(h for h in fresh_site.log if h.path == "/fault/pixel.gif")
    assert hit.user_agent == policy.user_agent and hit.referer == "http://x.example/p"


def test_429_waits_for_retry_after(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/429?n=2&key=wait")
    assert result.ok and result.attempts == 3
    times = [hit.at for hit in fresh_site.log if hit.path == "/fault/429"]
    assert len(times) == 3
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times))  # Retry-After: 1


def test_503_with_retry_after_is_retried(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/503?n=1&key=once")
    assert result.ok and result.attempts == 2


def test_retry_after_past_the_deadline_gives_up_at_once(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/429?n=5&key=deadline", FetchPolicy(allow_private=True, item_deadline=0.5))
    expect_error(result, "rate_limited")
    assert result.status == 429 and result.attempts == 1
    assert "deadline" in (result.error or "")


def test_retry_after_forms() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True))
    assert later is not None and 25 <= later <= 31
    assert parse_retry_after(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)) == 0.0


def test_flapping_500_is_retried_with_backoff(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/flap?key=flap-ok")
    assert result.ok and result.attempts == 2


def test_persistent_5xx_fails_after_the_retries(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/switch/never-on", FetchPolicy(allow_private=True, retries=2, backoff_base=0.01))
    expect_error(result, "http_5xx")
    assert result.status == 500 and result.attempts == 3
    assert fresh_site.hits["/fault/switch/never-on"] == 3


def test_slow_body_past_the_deadline_is_a_timeout(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/slow?delay=0.2", FetchPolicy(allow_private=True, item_deadline=1.0))
    expect_error(result, "timeout")
    assert result.status == 200 and "deadline" in (result.error or "")


def test_endless_body_stops_at_the_size_limit(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/endless", FetchPolicy(allow_private=True, max_bytes=1024 * 1024))
    expect_error(result, "too_large")


def test_declared_huge_body_is_refused_before_reading(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/huge")
    expect_error(result, "too_large")
    assert "Content-Length" in (result.error or "")


def test_redirect_loop_and_too_many_redirects(fresh_site: Site) -> None:
    expect_error(fetch(fresh_site, "/fault/loop"), "redirect_loop")
    expect_error(fetch(fresh_site, "/fault/chain?n=7"), "redirect_loop")
    chained = fetch(fresh_site, "/fault/chain?n=3")
    assert chained.ok and chained.final_url == fresh_site.url("/fault/chain?n=0")


def test_html_served_as_jpeg_is_refused(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/html-as-jpeg")
    expect_error(result, "content_type")
    assert "HTML" in (result.error or "")


def test_wrong_content_type_is_refused_before_the_body(fresh_site: Site) -> None:
    expect_error(fetch(fresh_site, "/robots.txt"), "content_type")  # text/plain as an image
    page = fetch(fresh_site, "/robots.txt", kind="page")  # pages are not sniffed
    assert page.ok and page.data and b"Disallow" in page.data


def test_tracking_pixel_is_fetched_as_the_bytes_it_is(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/fault/pixel.gif")  # ingest refuses it (too small); fetching is fine
    assert result.ok and result.data == GIF_PIXEL


def test_noai_header_is_respected_unless_told_not_to(fresh_site: Site) -> None:
    expect_error(fetch(fresh_site, "/fault/noai"), "noai")
    assert fetch(fresh_site, "/fault/noai", FetchPolicy(allow_private=True, respect_noai=False)).ok


def test_http_404_is_final(fresh_site: Site) -> None:
    result = fetch(fresh_site, "/img/no-such-photo.jpg")
    expect_error(result, "http_4xx")
    assert result.status == 404 and result.attempts == 1


def test_bad_urls_never_raise() -> None:
    with Fetcher(LOCAL) as fetcher:
        for url, kind in (
            ("ftp://example.org/a.jpg", "scheme"),
            ("file:///etc/passwd", "scheme"),
            ("javascript:alert(1)", "scheme"),
            ("not a url", "scheme"),
            ("http://[::1/a.jpg", "invalid_url"),
            ("http://example.org:99999/a.jpg", "invalid_url"),
        ):
            expect_error(fetcher.fetch(url, kind="image"), kind)


def test_connection_refused_then_the_host_is_paused() -> None:
    url = f"http://127.0.0.1:{free_port()}/a.jpg"  # nothing listens there
    policy = FetchPolicy(allow_private=True, obey_robots=False, retries=0, host_failure_limit=2, host_pause=60)
    with Fetcher(policy) as fetcher:
        first, second, third = (fetcher.fetch(url, kind="image", referer=None) for _ in range(3))
    for result in (first, second, third):
        expect_error(result, "connection")
    assert "skipped for now" in (third.error or "") and third.attempts == 1


def test_sniffing_and_noai_directives() -> None:
    assert sniff_image(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert sniff_image(b"<!doctype html>") is None
    assert noai_directive(["noindex, noimageai"], "GleanerBot/0.1") == "noimageai"
    assert noai_directive(["GleanerBot: noai"], "GleanerBot/0.1") == "noai"
    assert noai_directive(["otherbot: noai", "noindex"], "GleanerBot/0.1") is None


# -- robots.txt ----------------------------------------------------------------------------------------------------


def test_robots_txt_is_obeyed_and_fetched_once(fresh_site: Site) -> None:
    names = fresh_site.photo_names[:12]
    with Fetcher(LOCAL) as fetcher, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: fetcher.fetch(fresh_site.url(f"/img/{n}"), kind="image"), names))
        private = fetcher.fetch(fresh_site.url(f"/private/{names[0]}"), kind="image")
        assert fetcher.allowed_by_robots(fresh_site.url("/img/x.jpg"))
        assert not fetcher.allowed_by_robots(fresh_site.url("/private/x.jpg"))
    assert all(r.ok for r in results)
    expect_error(private, "robots")
    assert fresh_site.hits["/robots.txt"] == 1
    assert not any(path.startswith("/private/") for path in fresh_site.hits)


def test_ignore_robots_fetches_disallowed_paths(fresh_site: Site) -> None:
    name = fresh_site.photo_names[1]
    result = fetch(fresh_site, f"/private/{name}", FetchPolicy(allow_private=True, obey_robots=False))
    assert result.ok
    assert fresh_site.hits["/robots.txt"] == 0


def test_robots_rules_longest_match_wildcards_and_agents() -> None:
    text = """
    User-agent: *
    Disallow: /private/
    Disallow: /*.gif$
    Allow: /private/open/
    Disallow: /search?q=

    User-agent: otherbot
    Disallow: /

    User-agent: GleanerBot
    User-agent: somebot
    Disallow: /only-for-gleaner/
    Allow: /only-for-gleaner/yes
    """
    star = parse_robots(text, "AnyBot")
    assert not star.allowed("/private/a.jpg") and star.allowed("/private/open/a.jpg")
    assert not star.allowed("/x/pixel.gif") and star.allowed("/x/pixel.gif?v=2")
    assert not star.allowed("/search?q=cats") and star.allowed("/search")
    assert star.allowed("/robots.txt") and star.allowed("/img/a.jpg")
    mine = parse_robots(text, "gleanerbot")  # product tokens match case-insensitively; only our group applies
    assert mine.allowed("/private/a.jpg")
    assert not mine.allowed("/only-for-gleaner/no") and mine.allowed("/only-for-gleaner/yes")
    assert not parse_robots(text, "OtherBot").allowed("/img/a.jpg")
    assert parse_robots("User-agent: *\nDisallow:\n", "GleanerBot").allowed("/anything")


@pytest.mark.parametrize(
    ("answer", "allowed"),
    [((200, b"User-agent: *\nDisallow: /no/\n"), False), ((404, None), True), ((403, None), True),
     ((503, None), False), ((429, None), False), ((None, None), False)],
)  # fmt: skip
def test_robots_availability_rules(answer: tuple[int | None, bytes | None], allowed: bool) -> None:
    """RFC 9309: 4xx means no rules; 5xx, 429 and unreachable mean disallow everything."""
    calls: list[str] = []

    def fake_fetch(url: str) -> tuple[int | None, bytes | None]:
        calls.append(url)
        return answer

    cache = RobotsCache(fake_fetch, "GleanerBot/0.1")
    assert cache.allowed("http://example.org/no/a.jpg") is allowed
    assert cache.allowed("http://example.org/no/b.jpg") is allowed
    assert calls == ["http://example.org/robots.txt"]


def test_robots_unreachable_or_5xx_blocks_the_host_as_a_retryable_failure(fresh_site: Site) -> None:
    port = free_port()  # nothing listens: robots.txt is unreachable
    with Fetcher(FetchPolicy(allow_private=True, retries=0)) as fetcher:
        result = fetcher.fetch(f"http://127.0.0.1:{port}/a.jpg", kind="image")
        assert not fetcher.allowed_by_robots(f"http://127.0.0.1:{port}/b.jpg")
    expect_error(result, "connection")
    assert "robots.txt unreachable" in (result.error or "")
    with Site() as broken:  # a second origin whose robots.txt answers 503
        broken.route("/robots.txt", lambda _request: Response.text("down", 503))
        with Fetcher(FetchPolicy(allow_private=True, retries=0)) as fetcher:
            result = fetcher.fetch(broken.url("/img/a.jpg"), kind="image")
        assert broken.hits["/robots.txt"] == 1 and broken.hits["/img/a.jpg"] == 0
    expect_error(result, "http_5xx")


# -- SSRF guard -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "word"),
    [
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "address"),  # reserved (Python files it under private)
        ("100.64.0.1", "non-global"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("fc00::1", "private"),
    ],
)
def test_forbidden_addresses(address: str, word: str) -> None:
    reason = forbidden_reason(address)
    assert reason is not None and word in reason, (address, reason)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_reason(address) is None


def test_loopback_is_refused_without_allow_private(fresh_site: Site) -> None:
    result = fetch(fresh_site, f"/img/{fresh_site.photo_names[0]}", FetchPolicy())
    expect_error(result, "ssrf")
    assert "loopback" in (result.error or "") and result.attempts == 0
    assert sum(fresh_site.hits.values()) == 0  # not even robots.txt was asked for


def test_private_and_metadata_literals_are_refused_without_connecting() -> None:
    with Fetcher(FetchPolicy()) as fetcher:
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://10.0.0.1/a.jpg",
            "http://[::1]:8080/a.jpg",
            "https://192.168.0.1/a.jpg",
        ):
            expect_error(fetcher.fetch(url, kind="image"), "ssrf")


def test_redirect_to_a_private_host_is_refused(fresh_site: Site) -> None:
    """`public.test` is let through (allow_networks); a hop to any other internal address is not."""
    port = fresh_site.port
    resolver = Resolver(overrides={"public.test": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})
    policy = FetchPolicy(allow_networks=("127.0.0.1/32",), per_host_rate=0)
    name = fresh_site.photo_names[2]
    with Fetcher(policy, resolver=resolver) as fetcher:
        direct = fetcher.fetch(f"http://public.test:{port}/img/{name}", kind="image")
        assert direct.ok and direct.data == fresh_site.photo(name)
        for target in (
            f"http://internal.test:{port}/img/{name}",
            f"http://10.0.0.1:{port}/img/{name}",
            "http://169.254.169.254/latest/meta-data/",
            f"http://[::1]:{port}/img/{name}",
        ):
            result = fetcher.fetch(f"http://public.test:{port}/fault/redirect?to={target}", kind="image")
            expect_error(result, "ssrf")
            assert result.status == 302 and result.final_url == target  # the last status seen: the redirect
    assert fresh_site.hits["/fault/redirect"] == 4  # the allowed first hop was served each time


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make a test certificate")
def test_https_dials_the_checked_address_and_still_verifies_the_name(tmp_path: Path, photos_dir: Path) -> None:
    """The guard replaces only the address dialled: SNI and certificate checks still use the host name."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with Site(photos_dir, ssl_context=context) as tls_site:
        name = tls_site.photo_names[0]
        resolver = Resolver(overrides={"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
        policy = FetchPolicy(allow_networks=("127.0.0.1/32",), obey_robots=False, ca_bundle=str(cert), retries=0)
        with Fetcher(policy, resolver=resolver) as fetcher:
            good = fetcher.fetch(f"https://images.test:{tls_site.port}/img/{name}", kind="image")
            wrong_name = fetcher.fetch(f"https://other.test:{tls_site.port}/img/{name}", kind="image")
        with Fetcher(FetchPolicy(allow_networks=("127.0.0.1/32",), obey_robots=False), resolver=resolver) as fetcher:
            untrusted = fetcher.fetch(f"https://images.test:{tls_site.port}/img/{name}", kind="image")
    assert good.ok and good.data == tls_site.photo(name)
    expect_error(wrong_name, "connection")
    assert "TLS" in (wrong_name.error or "")
    expect_error(untrusted, "connection")


def test_dns_is_cached_per_host_and_failures_are_connection_errors(fresh_site: Site) -> None:
    lookups: list[str] = []

    def resolve(host: str) -> list[str]:
        lookups.append(host)
        if host == "nowhere.test":
            raise socket.gaierror("Name or service not known")
        return ["127.0.0.1"]

    resolver = Resolver(resolve=resolve)
    with Fetcher(LOCAL, resolver=resolver) as fetcher, ThreadPoolExecutor(6) as pool:
        urls = [f"http://cached.test:{fresh_site.port}/img/{n}" for n in fresh_site.photo_names[:6]]
        assert all(r.ok for r in pool.map(lambda u: fetcher.fetch(u, kind="image"), urls))
        missing = [fetcher.fetch("http://nowhere.test/a.jpg", kind="image") for _ in range(2)]
    assert lookups.count("cached.test") == 1 and lookups.count("nowhere.test") == 1
    for result in missing:
        expect_error(result, "connection")


# -- per-host limits and threads -------------------------------------------------------------------------------------


def test_per_host_concurrency_limit_is_honoured(fresh_site: Site) -> None:
    policy = FetchPolicy(allow_private=True, obey_robots=False, per_host_rate=0, per_host_concurrency=3)
    names = fresh_site.photo_names[:12]
    with Fetcher(policy) as fetcher, ThreadPoolExecutor(12) as pool:
        results = list(
            pool.map(lambda n: fetcher.fetch(fresh_site.url(f"/fault/hold?ms=150&img={n}"), kind="image"), names)
        )
    assert all(r.ok for r in results)
    assert [r.data for r in results] == [fresh_site.photo(n) for n in names]
    assert 1 <= fresh_site.peaks["hold"] <= 3  # requests held by the server at once


def test_per_host_token_bucket_spaces_requests(fresh_site: Site) -> None:
    policy = FetchPolicy(allow_private=True, obey_robots=False, per_host_rate=10, per_host_burst=1)
    with Fetcher(policy) as fetcher, ThreadPoolExecutor(6) as pool:
        assert all(
            r.ok for r in pool.map(lambda _: fetcher.fetch(fresh_site.url("/fault/pixel.gif"), kind="image"), range(6))
        )
    times = sorted(hit.at for hit in fresh_site.log)
    assert times[-1] - times[0] >= 0.45  # 6 requests at 10/s with a burst of 1: at least 5 gaps of 0.1 s


def test_one_fetcher_shared_by_many_threads(fresh_site: Site) -> None:
    names = fresh_site.photo_names[:40]
    errors: list[BaseException] = []
    with Fetcher(FetchPolicy(allow_private=True, per_host_rate=0)) as fetcher:

        def work(name: str) -> None:
            try:
                result = fetcher.fetch(fresh_site.url(f"/img/{name}"), kind="image")
                assert result.ok and result.data == fresh_site.photo(name)
            except BaseException as exc:  # collected: assertion errors in threads must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[:3]
