"""Which outbound HTTP proxy, if any, a provider's connections go through.

Decided once per connection pool (http1.Client.pool), never per request. The rules, as the
README documents them:

- ``providers.<name>.proxy: http://[user:pass@]host[:port]`` sends that provider's connections
  through that proxy, whatever the destination (loopback included) and whatever ``NO_PROXY``
  says: an explicit per-provider setting is the operator's final word. ``proxy: none`` sends
  them direct, whatever the environment says.
- Otherwise the environment decides, read once at start-up: ``https_proxy``/``HTTPS_PROXY`` for
  https upstreams, ``http_proxy``/``HTTP_PROXY`` for http ones (lowercase wins when both are set,
  as in curl, requests and Go). ``ALL_PROXY`` is not read: it is usually a SOCKS proxy.
- ``no_proxy``/``NO_PROXY`` (lowercase wins) exempts destinations from the environment proxy:
  entries separated by commas or spaces, case-insensitive; ``*`` alone exempts everything;
  ``example.com``, ``.example.com`` and ``*.example.com`` all match example.com and every name
  under it (curl's and requests' reading; a label boundary is required, so ``ample.com`` does
  not match ``example.com``); an IP address matches that literal address and a CIDR block
  (``10.0.0.0/8``, ``fd00::/8``) every literal address inside it, IPv6 with or without brackets;
  ``host:port`` (``[::1]:8443``) matches that port only. Names are never resolved to match
  IP entries: a name matches only name entries.
- Loopback destinations (``localhost``, ``*.localhost``, 127.0.0.0/8, ``::1``) never go through
  the environment proxy, as in Go's net/http: a local model server (Ollama, vLLM) is not reached
  through a corporate proxy by accident. Give that provider an explicit ``proxy:`` to force it.

Only ``http://`` proxies are spoken (a scheme-less ``host:port`` means http, as curl reads it; the
port defaults to 80 as the URL scheme says, not to curl's 1080). An https upstream is reached
through a ``CONNECT`` tunnel, so its TLS still runs end to end with the provider; an http
upstream is sent to the proxy in absolute form. ``https://`` (TLS to the proxy) and ``socks*://``
proxies are refused at start-up rather than silently ignored.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


_URL_FIX = "use http://[user:pass@]host:port"


class ProxyConfigError(ValueError):
    """A proxy URL or NO_PROXY entry that cannot be used; never quotes a password."""

    def __init__(self, message: str, fix: str = _URL_FIX) -> None:
        super().__init__(message)
        self.fix = fix


@dataclass(frozen=True, slots=True)
class ProxyURL:
    host: str  # without brackets for IPv6
    port: int
    # The Proxy-Authorization header's value, when the URL carries credentials.
    authorization: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """For logs and the banner: never the password."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{'***@' if self.authorization else ''}{host}:{self.port}"

    def __str__(self) -> str:
        return self.display


def parse_proxy_url(raw: str) -> ProxyURL:
    """``http://[user[:pass]@]host[:port]``; raise ProxyConfigError (never quoting a password)."""
    text = raw.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError:
        raise ProxyConfigError("not a valid proxy URL (bad port or brackets)") from None
    scheme = u.scheme.lower()
    if scheme == "https":
        raise ProxyConfigError(
            "https:// proxies (TLS to the proxy) are not supported",
            "use http://host:port: an https provider is still reached with TLS end to end, "
            "through a CONNECT tunnel",
        )
    if scheme != "http":
        raise ProxyConfigError(f"{scheme}:// proxies are not supported", "use an http:// proxy")
    if not u.hostname:
        raise ProxyConfigError("the proxy URL has no host")
    if u.path not in ("", "/") or u.query or u.fragment:
        raise ProxyConfigError("a proxy URL has no path or query")
    auth = None
    if u.username is not None or u.password is not None:
        user, password = unquote(u.username or ""), unquote(u.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return ProxyURL(u.hostname.lower(), port or 80, auth)


def _host_key(host: str) -> str:
    return host.lower().rstrip(".").strip("[]")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    h = _host_key(host)
    if h == "localhost" or h.endswith(".localhost"):
        return True
    ip = _ip(h)
    return ip is not None and ip.is_loopback


@dataclass(frozen=True, slots=True)
class NoProxy:
    everything: bool = False
    names: tuple[tuple[str, int | None], ...] = ()  # (domain, port or None)
    networks: tuple[tuple[IPNetwork, int | None], ...] = ()

    @classmethod
    def parse(cls, raw: str) -> NoProxy:
        names: list[tuple[str, int | None]] = []
        networks: list[tuple[IPNetwork, int | None]] = []
        everything = False
        for entry in re.split(r"[,\s]+", raw.strip()):
            if not entry:
                continue
            if entry == "*":
                everything = True
                continue
            host, port = _split_port(entry)
            net = _network(host)
            if net is not None:
                networks.append((net, port))
                continue
            name = _host_key(host)
            name = name[2:] if name.startswith("*.") else name.lstrip(".")
            if not name or "*" in name or "/" in name:
                raise ProxyConfigError(f"cannot read the entry '{entry}'", _NO_PROXY_FIX)
            names.append((name, port))
        return cls(everything, tuple(names), tuple(networks))

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        h = _host_key(host)
        ip = _ip(h)
        if ip is not None:
            return any(ip in net and (p is None or p == port) for net, p in self.networks)
        return any(
            (h == name or h.endswith("." + name)) and (p is None or p == port) for name, p in self.names
        )


_NO_PROXY_FIX = (
    "list hosts, .domains, IP addresses, CIDR blocks or *, each optionally with :port, separated by commas"
)


def _split_port(entry: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", entry)
    if m:
        return m.group(1), int(m.group(2)) if m.group(2) else None
    if entry.count(":") == 1:  # host:port; more than one colon is a bare IPv6 address
        host, _, port = entry.partition(":")
        if not port.isdigit():
            raise ProxyConfigError(f"cannot read the port of '{entry}'", _NO_PROXY_FIX)
        return host, int(port)
    return entry, None


def _network(host: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(host, strict=False)
    except ValueError:
        if "/" in host:
            raise ProxyConfigError(f"'{host}' is not a valid CIDR block", _NO_PROXY_FIX) from None
        return None


# The variables read, lowercase first: it wins when both spellings are set.
ENV_VARIABLES = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY")


def proxy_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The proxy variables of ``env`` that are set and not empty, as the process started with."""
    return {k: env[k] for k in ENV_VARIABLES if env.get(k, "").strip()}


def _first(env: Mapping[str, str], name: str) -> tuple[str, str] | None:
    for var in (name.lower(), name.upper()):
        if env.get(var, "").strip():
            return var, env[var]
    return None


@dataclass(frozen=True, slots=True)
class ProxyEnvironment:
    http: ProxyURL | None = None
    https: ProxyURL | None = None
    no_proxy: NoProxy = field(default_factory=NoProxy)

    @classmethod
    def parse(cls, env: Mapping[str, str]) -> tuple[ProxyEnvironment, list[tuple[str, ProxyConfigError]]]:
        """The environment's proxies and the problems found, by variable."""
        problems: list[tuple[str, ProxyConfigError]] = []
        urls: dict[str, ProxyURL | None] = {}
        for name in ("https_proxy", "http_proxy"):
            urls[name] = None
            found = _first(env, name)
            if found is not None:
                try:
                    urls[name] = parse_proxy_url(found[1])
                except ProxyConfigError as e:
                    problems.append((found[0], e))
        no_proxy = NoProxy()
        found = _first(env, "no_proxy")
        if found is not None:
            try:
                no_proxy = NoProxy.parse(found[1])
            except ProxyConfigError as e:
                problems.append((found[0], e))
        return cls(urls["http_proxy"], urls["https_proxy"], no_proxy), problems

    def choose(self, scheme: str, host: str, port: int) -> ProxyURL | None:
        proxy = self.https if scheme == "https" else self.http
        if proxy is None or is_loopback(host) or self.no_proxy.matches(host, port):
            return None
        return proxy


def choose_proxy(
    explicit: str | None, env: ProxyEnvironment, scheme: str, host: str, port: int
) -> ProxyURL | None:
    """The proxy for one upstream origin: the provider's own setting, else the environment's."""
    if explicit is None or not explicit.strip():
        return env.choose(scheme, host, port)
    if explicit.strip().lower() == "none":
        return None
    return parse_proxy_url(explicit)
