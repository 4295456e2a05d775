"""Proxy headers (``proxy_headers``, ``forwarded_allow_ips``): the trust rule, then over real sockets.

Unit tests call ``cyclehttp.cycle.proxy`` directly with header pairs as the protocol
collects them; the end-to-end tests send the headers to a test server on
127.0.0.1 and read what the handler saw.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyclehttp import App, Request
from cyclehttp.clock.accesslog import ACCESS_LOGGER, AccessLog
from cyclehttp.config import Config, TrustedProxies, trusted_proxies
from cyclehttp.cycle.context import ConnectionContext
from cyclehttp.cycle.proxy import MAX_FORWARDED_HOPS, parse_forwarded, resolve
from cyclehttp.serving.cli import build_parser, main
from cyclehttp.testing import TestServer

ServerFactory = Callable[..., Awaitable[TestServer]]

PEER = ("127.0.0.1", 40000)
LOCAL = trusted_proxies("127.0.0.1")


def headers(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in [("Host", "origin.test"), *pairs]]


def seen(*pairs: tuple[str, str], trusted: TrustedProxies = LOCAL, peer: Any = PEER) -> tuple[Any, ...]:
    """(client, scheme, host) of a request from ``peer`` with ``pairs`` (and ``Host: origin.test``)."""
    return resolve(trusted, peer, trusted.trusts_peer(peer), headers(*pairs))


# -- forwarded_allow_ips ------------------------------------------------------------


def test_addresses_and_networks_are_trusted() -> None:
    trusted = TrustedProxies("127.0.0.1, 10.0.0.0/8,::1,fd00::/8")
    for address in ("127.0.0.1", "10.1.2.3", "::1", "fd00::5"):
        assert trusted.trusts(ipaddress.ip_address(address)), address
    for address in ("127.0.0.2", "11.0.0.1", "::2", "fe80::1"):
        assert not trusted.trusts(ipaddress.ip_address(address)), address
    assert not trusted.trust_unix and not trusted.trust_all


def test_ipv4_mapped_peers_match_their_ipv4_entry() -> None:
    """A dual-stack listener sees 127.0.0.1 as ::ffff:127.0.0.1."""
    assert LOCAL.trusts_peer(("::ffff:127.0.0.1", 5, 0, 0))
    assert TrustedProxies("::ffff:10.0.0.1").trusts_peer(("10.0.0.1", 5))


def test_star_trusts_everyone_and_unix_trusts_unix_sockets() -> None:
    star = TrustedProxies("*")
    assert star.trusts_peer(("203.0.113.9", 1)) and star.trusts_peer("") and star.trusts_peer("/run/s.sock")
    unix = TrustedProxies("unix")
    assert unix.trusts_peer("") and unix.trusts_peer(None)
    assert not unix.trusts_peer(("127.0.0.1", 1))
    assert not LOCAL.trusts_peer(""), "a Unix-socket peer needs 'unix' (or '*')"
    assert TrustedProxies("127.0.0.1,UNIX").trust_unix


def test_peers_that_are_not_addresses_are_not_trusted() -> None:
    assert not LOCAL.trusts_peer(("localhost", 1))
    assert not LOCAL.trusts_peer(())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("localhost", "'localhost' is not an IP address or network (host names are not resolved)"),
        ("127.0.0.1,10.0.0.300", "'10.0.0.300' is not an IP address"),
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set; did you mean '10.0.0.0/8'?"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP network"),
        ("", "forwarded_allow_ips is empty"),
        (" , ", "forwarded_allow_ips is empty"),
    ],
)
def test_bad_entries_are_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="forwarded_allow_ips") as info:
        Config(forwarded_allow_ips=spec)
    assert message in str(info.value)


def test_config_fields_are_checked() -> None:
    assert Config().proxy_headers is False and Config().forwarded_allow_ips == "127.0.0.1"
    with pytest.raises(ValueError, match="proxy_headers must be True or False"):
        Config(proxy_headers="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forwarded_allow_ips must be a str"):
        Config(forwarded_allow_ips=["127.0.0.1"])  # type: ignore[arg-type]
    assert Config.from_options({"proxy_headers": True, "forwarded_allow_ips": "*"}).proxy_headers


def test_each_spec_is_parsed_once() -> None:
    assert trusted_proxies("10.9.8.7") is trusted_proxies("10.9.8.7")


# -- X-Forwarded-* -------------------------------------------------------------------


def test_untrusted_peer_headers_are_never_used() -> None:
    client = seen(
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "evil.test"),
        peer=("192.0.2.1", 5),
    )
    assert client == (("192.0.2.1", 5), "http", "origin.test")
    assert seen(("Forwarded", "for=1.2.3.4;proto=https"), peer=("192.0.2.1", 5))[0] == ("192.0.2.1", 5)


def test_trusted_peer_names_the_client() -> None:
    assert seen(
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "example.com"),
    ) == (("203.0.113.7", 0), "https", "example.com")


def test_no_proxy_headers_from_a_trusted_peer() -> None:
    assert seen() == (PEER, "http", "origin.test")
    assert seen(peer=None) == (None, "http", "origin.test")


def test_the_walk_skips_trusted_proxies_from_the_right() -> None:
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    # The client spoofed 6.6.6.6; the edge proxy appended the real client, 203.0.113.7.
    value = "6.6.6.6, 203.0.113.7, 10.0.0.2, 10.0.0.3"
    assert seen(("X-Forwarded-For", value), trusted=trusted)[0] == ("203.0.113.7", 0)


def test_every_entry_trusted_gives_the_leftmost() -> None:
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    assert seen(("X-Forwarded-For", "10.0.0.9, 10.0.0.2"), trusted=trusted)[0] == ("10.0.0.9", 0)
    star = TrustedProxies("*")
    assert seen(("X-Forwarded-For", "6.6.6.6, 203.0.113.7"), trusted=star)[0] == ("6.6.6.6", 0)


def test_repeated_header_lines_are_one_list() -> None:
    client = seen(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "203.0.113.7"))
    assert client[0] == ("203.0.113.7", 0)


@pytest.mark.parametrize(
    ("entry", "client"),
    [
        ("203.0.113.7:8443", ("203.0.113.7", 8443)),
        ("2001:db8::1", ("2001:db8::1", 0)),
        ("[2001:db8::1]", ("2001:db8::1", 0)),
        ("[2001:DB8::1]:443", ("2001:db8::1", 443)),
        ("::ffff:203.0.113.7", ("203.0.113.7", 0)),
        ("  203.0.113.7  ", ("203.0.113.7", 0)),
    ],
)
def test_address_forms(entry: str, client: tuple[str, int]) -> None:
    assert seen(("X-Forwarded-For", entry))[0] == client


@pytest.mark.parametrize(
    "value",
    [
        "",
        " , ",
        "garbage",
        "203.0.113.7:99999",
        "203.0.113.7:",
        "[203.0.113.7]",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "unknown",
        "1.2.3.4:²",
        "example.com",
        "1.2.3.4\x00",
        "1.2.3.4, garbage",
    ],
)
def test_malformed_x_forwarded_for_falls_back_to_the_peer(value: str) -> None:
    assert seen(("X-Forwarded-For", value))[0] == PEER


def test_an_untrusted_entry_right_of_garbage_is_still_the_client() -> None:
    """Garbage a client sent cannot undo what the proxy appended."""
    assert seen(("X-Forwarded-For", "garbage, 203.0.113.7"))[0] == ("203.0.113.7", 0)


def test_absurdly_long_lists() -> None:
    spoofed = ", ".join(["127.0.0.1"] * 5000)
    assert seen(("X-Forwarded-For", spoofed))[0] == PEER, "past MAX_FORWARDED_HOPS trusted hops: the peer"
    assert seen(("X-Forwarded-For", spoofed + ", 203.0.113.7"))[0] == ("203.0.113.7", 0)
    exactly = ", ".join(["10.0.0.1", *["127.0.0.1"] * (MAX_FORWARDED_HOPS - 1)])
    assert seen(("X-Forwarded-For", exactly))[0] == ("10.0.0.1", 0)


@pytest.mark.parametrize(
    ("value", "scheme"),
    [("https", "https"), ("HTTPS ", "https"), ("http", "http"), ("wss", "http"), ("", "http"),
     ("ftp", "http"), ("http, https", "https"), ("https, http", "http")],
)  # fmt: skip
def test_x_forwarded_proto(value: str, scheme: str) -> None:
    assert seen(("X-Forwarded-Proto", value))[1] == scheme


@pytest.mark.parametrize(
    ("value", "host"),
    [("example.com", "example.com"), ("example.com:8443", "example.com:8443"), ("[::1]:80", "[::1]:80"),
     ("a.test, b.test", "b.test"), ("", "origin.test"), ("bad host", "origin.test"),
     ("x/y", "origin.test"), ("a" * 300, "origin.test"), ("h\"q", "origin.test"), (":80", "origin.test")],
)  # fmt: skip
def test_x_forwarded_host(value: str, host: str) -> None:
    assert seen(("X-Forwarded-Host", value))[2] == host


def test_proto_and_host_alone_are_used_and_keep_the_peer() -> None:
    assert seen(("X-Forwarded-Proto", "https")) == (PEER, "https", "origin.test")


def test_header_names_are_case_insensitive() -> None:
    assert seen(("x-FORWARDED-for", "203.0.113.7"))[0] == ("203.0.113.7", 0)


def test_without_a_host_header_host_is_empty() -> None:
    assert resolve(LOCAL, PEER, True, []) == (PEER, "http", "")


# -- Forwarded (RFC 7239) ---------------------------------------------------------------


def test_forwarded_for_proto_host() -> None:
    assert seen(("Forwarded", 'for=203.0.113.7;proto=https;host="example.com:8443"')) == (
        ("203.0.113.7", 0),
        "https",
        "example.com:8443",
    )


def test_forwarded_rfc_examples() -> None:
    """RFC 7239 section 4 and 7.1 examples."""
    assert seen(("Forwarded", 'for="_gazonk"'))[0] == ("_gazonk", 0)
    assert seen(("Forwarded", 'For="[2001:db8:cafe::17]:4711"'))[0] == ("2001:db8:cafe::17", 4711)
    assert seen(("Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")) == (
        ("192.0.2.60", 0),
        "http",
        "origin.test",
    )
    assert seen(("Forwarded", "for=192.0.2.43, for=198.51.100.17"))[0] == ("198.51.100.17", 0)
    assert seen(("Forwarded", "for=unknown"))[0] == ("unknown", 0)
    assert seen(("Forwarded", 'for="_hidden:_port"'))[0] == ("_hidden", 0)
    assert seen(("Forwarded", 'for="_hidden:8080"'))[0] == ("_hidden", 8080)


def test_forwarded_walk_takes_proto_and_host_from_the_clients_hop() -> None:
    trusted = TrustedProxies("127.0.0.1,10.0.0.0/8")
    value = "for=203.0.113.7;proto=https;host=shop.test, for=10.0.0.2;proto=http;host=internal"
    assert seen(("Forwarded", value), trusted=trusted) == (("203.0.113.7", 0), "https", "shop.test")
    everyone = "for=10.0.0.9;proto=https, for=10.0.0.2;proto=http"
    assert seen(("Forwarded", everyone), trusted=trusted) == (("10.0.0.9", 0), "https", "origin.test")


def test_forwarded_element_without_for_keeps_the_peer() -> None:
    assert seen(("Forwarded", "proto=https;host=example.com")) == (PEER, "https", "example.com")


def test_x_forwarded_wins_over_forwarded() -> None:
    """nginx sets X-Forwarded-For and passes a client's Forwarded through: that one is ignored."""
    both = seen(("Forwarded", "for=6.6.6.6;proto=https;host=evil.test"), ("X-Forwarded-For", "203.0.113.7"))
    assert both == (("203.0.113.7", 0), "http", "origin.test")
    assert seen(("Forwarded", "for=6.6.6.6"), ("X-Forwarded-Proto", "https")) == (
        PEER,
        "https",
        "origin.test",
    )


def test_forwarded_quoted_values_and_escapes() -> None:
    elements = parse_forwarded(r'for="a\"b";HOST="x,y" , , by=z;proto=https')
    assert elements == [{"for": 'a"b', "host": "x,y"}, {"by": "z", "proto": "https"}]


@pytest.mark.parametrize(
    "value",
    ["for", "for=", "for=1.2.3.4;for=5.6.7.8", "for=1.2.3.4 proto=https", 'for="1.2.3.4', "=x", "for=a b"],
)
def test_malformed_forwarded_falls_back(value: str) -> None:
    assert seen(("Forwarded", value)) == (PEER, "http", "origin.test")


def test_malformed_forwarded_element_does_not_hide_the_proxys() -> None:
    """An unterminated quote resumes at the next comma, so the element the proxy appended is read."""
    assert parse_forwarded('for="6.6.6.6, for=203.0.113.7') == [None, {"for": "203.0.113.7"}]
    assert seen(("Forwarded", 'for="6.6.6.6, for=203.0.113.7'))[0] == ("203.0.113.7", 0)
    assert seen(("Forwarded", "garbage garbage, for=203.0.113.7"))[0] == ("203.0.113.7", 0)


def test_forwarded_bad_values_fall_back_field_by_field() -> None:
    assert seen(("Forwarded", 'for=nonsense;proto=gopher;host="a b"')) == (PEER, "http", "origin.test")


_HEADER_NAMES = st.sampled_from(
    ["X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "Host"]
)
_HEADER_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=200),
    st.lists(
        st.sampled_from(["for=", "proto=", "host=", '"', "\\", ";", ",", " ", "[", "]", ":", "::1", "1.2.3.4",
                         "127.0.0.1", "_x", "unknown", "https", "=", "80"]),
        max_size=40,
    ).map("".join),
)  # fmt: skip


@given(
    st.lists(st.tuples(_HEADER_NAMES, _HEADER_TEXT), max_size=6),
    st.sampled_from(["127.0.0.1", "*", "unix", "10.0.0.0/8,::1"]),
    st.sampled_from([PEER, ("::1", 5, 0, 0), "", None, ("10.0.0.1", 9)]),
)
def test_never_raises_on_any_header_text(pairs: list[tuple[str, str]], spec: str, peer: Any) -> None:
    trusted = trusted_proxies(spec)
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]
    tcp_peer = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
    client, scheme, host = resolve(trusted, tcp_peer, trusted.trusts_peer(peer), raw)
    assert scheme in ("http", "https")
    assert isinstance(host, str)
    if client is not None:
        assert isinstance(client[0], str) and client[0] and 0 <= client[1] <= 65535
        assert not any(c in client[0] for c in ' ,;"\\\x00'), client


@given(st.text(max_size=300))
def test_parse_forwarded_never_raises(value: str) -> None:
    for element in parse_forwarded(value):
        assert element is None or all(isinstance(k, str) and isinstance(v, str) for k, v in element.items())


# -- Request -------------------------------------------------------------------------------


class CountingTransport:
    def __init__(self, peer: object) -> None:
        self.peer = peer
        self.calls = 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        self.calls += 1
        return self.peer if name == "peername" else default


def make_request(raw: list[tuple[bytes, bytes]], context: ConnectionContext | None) -> Request:
    return Request(b"GET", b"/", b"", raw, b"", None, "1.1", context)


def proxied(transport: Any, allow: str = "127.0.0.1") -> ConnectionContext:
    """The context of a connection that honours proxy headers from ``allow``."""
    return ConnectionContext(transport, Config(proxy_headers=True, forwarded_allow_ips=allow))


def direct(transport: Any) -> ConnectionContext:
    """The context of a connection without proxy headers."""
    return ConnectionContext(transport, Config())


def test_request_properties_are_lazy_and_resolved_once() -> None:
    transport = CountingTransport(PEER)
    context = proxied(transport)
    request = make_request(
        headers(("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")), context
    )
    assert transport.calls == 0
    assert request.client == ("203.0.113.7", 0)
    assert (request.scheme, request.host) == ("https", "origin.test")
    second = make_request(headers(("X-Forwarded-For", "198.51.100.1")), context)
    assert second.host == "origin.test" and second.client == ("198.51.100.1", 0)
    assert transport.calls == 1, "the peer is looked up once per connection"


def test_request_without_proxy_headers_uses_socket_and_host_header() -> None:
    transport = CountingTransport(PEER)
    request = make_request(
        headers(("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")), direct(transport)
    )
    assert (request.client, request.scheme, request.host) == (PEER, "http", "origin.test")
    assert make_request([], None).host == ""


def test_access_log_shows_the_forwarded_client() -> None:
    request = make_request(headers(("X-Forwarded-For", "203.0.113.7")), proxied(CountingTransport(PEER)))
    assert AccessLog().line("127.0.0.1", request, 200, 2, 0.001).startswith("203.0.113.7 - - ")
    plain = make_request(headers(("X-Forwarded-For", "203.0.113.7")), direct(CountingTransport(PEER)))
    assert AccessLog().line("127.0.0.1", plain, 200, 2, 0.001).startswith("127.0.0.1 - - ")
    unix = make_request(headers(), proxied(CountingTransport(""), "unix"))
    assert AccessLog().line("-", unix, 200, 2, 0.001).startswith("- - - ")


# -- end to end ---------------------------------------------------------------------------


def whoami(request: Request) -> dict[str, Any]:
    return {"client": request.client, "scheme": request.scheme, "host": request.host}


APP = App([("GET", "/whoami", whoami), ("GET", "/static", "static body")])

FORWARDED = (
    "X-Forwarded-For: 6.6.6.6, 203.0.113.7",
    "X-Forwarded-Proto: https",
    "X-Forwarded-Host: example.com",
)


def request_bytes(*extra: str, target: str = "/whoami") -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: origin.test", *extra]) + "\r\n\r\n").encode(
        "latin-1"
    )


async def ask(server: TestServer, *extra: str) -> dict[str, Any]:
    async with await server.raw() as connection:
        await connection.send(request_bytes(*extra))
        response = await connection.read_response(timeout=5)
    assert response.status == 200, response
    result: dict[str, Any] = response.json()
    return result


async def test_trusted_peer_sees_the_forwarded_client(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, proxy_headers=True)
    assert await ask(server, *FORWARDED) == {
        "client": ["203.0.113.7", 0],
        "scheme": "https",
        "host": "example.com",
    }


async def test_forwarded_header_end_to_end(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, proxy_headers=True, forwarded_allow_ips="127.0.0.0/8,::1")
    seen = await ask(server, 'Forwarded: for="[2001:db8::7]:4711";proto=https;host=shop.test')
    assert seen == {"client": ["2001:db8::7", 4711], "scheme": "https", "host": "shop.test"}
    both = await ask(server, "Forwarded: for=6.6.6.6;proto=https", "X-Forwarded-For: 203.0.113.7")
    assert both == {"client": ["203.0.113.7", 0], "scheme": "http", "host": "origin.test"}


async def test_untrusted_peer_headers_are_ignored(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, proxy_headers=True, forwarded_allow_ips="10.1.2.3")
    seen = await ask(server, *FORWARDED, "Forwarded: for=6.6.6.6;proto=https")
    assert seen["client"][0] == "127.0.0.1" and seen["client"][1] > 0
    assert (seen["scheme"], seen["host"]) == ("http", "origin.test")


async def test_proxy_headers_off_ignores_them(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, forwarded_allow_ips="*")
    seen = await ask(server, *FORWARDED)
    assert seen["client"][0] == "127.0.0.1" and (seen["scheme"], seen["host"]) == ("http", "origin.test")


async def test_malformed_values_fall_back_not_500(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, proxy_headers=True)
    for extra in (
        ("X-Forwarded-For: }garbage,,:::", "X-Forwarded-Proto: \xff", "X-Forwarded-Host: a b"),
        ("X-Forwarded-For: " + ",".join(["127.0.0.1"] * 1000),),
        ('Forwarded: for="unterminated;proto=https',),
    ):
        seen = await ask(server, *extra)
        assert seen["client"][0] == "127.0.0.1" and seen["scheme"] == "http", extra


async def test_keep_alive_requests_resolve_each_their_own(cyclehttp_server: ServerFactory) -> None:
    server = await cyclehttp_server(APP, proxy_headers=True)
    async with await server.raw() as connection:
        await connection.send(request_bytes("X-Forwarded-For: 203.0.113.1") + request_bytes())
        first, second = await connection.read_responses(2, timeout=5)
    assert first.json()["client"] == ["203.0.113.1", 0]
    assert second.json()["client"][0] == "127.0.0.1"


async def test_access_log_client_is_the_forwarded_one(
    cyclehttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    server = await cyclehttp_server(APP, proxy_headers=True, access_log=True)
    async with await server.raw() as connection:
        await connection.send(
            request_bytes("X-Forwarded-For: 203.0.113.7")
            + request_bytes("X-Forwarded-For: 198.51.100.2", target="/static")
            + request_bytes(target="/static")
        )
        await connection.read_responses(3, timeout=5)
    lines = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    assert [line.split(" ", 1)[0] for line in lines] == ["203.0.113.7", "198.51.100.2", "127.0.0.1"]


# -- CLI --------------------------------------------------------------------------------------


def test_cli_flags_come_from_the_config_fields() -> None:
    args = build_parser().parse_args(
        ["examples.hello:routes", "--proxy-headers", "--forwarded-allow-ips", "10.0.0.0/8,unix"]
    )
    assert args.proxy_headers is True and args.forwarded_allow_ips == "10.0.0.0/8,unix"
    defaults = build_parser().parse_args(["examples.hello:routes"])
    assert defaults.proxy_headers is False and defaults.forwarded_allow_ips == "127.0.0.1"


def test_cli_bad_forwarded_allow_ips_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["examples.hello:routes", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,nginx"])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("cyclehttp: error: forwarded_allow_ips: 'nginx' is not an IP address")
    assert "use e.g. '127.0.0.1,10.0.0.0/8'" in err
