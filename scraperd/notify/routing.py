"""Who hears about a check: the routes that name it, else the `*` routes, else mail_to and http_url.

    routes = source: dcs-experts@lab.org; freshness, fleet: scraper-experts@lab.org, http://mon:8080/hook

A recipient with "://" is a URL (a JSON POST), any other an e-mail address. Only the channels that
`notify` names are used: a routed address whose channel is not there is dropped (dropped() lists them,
for one warning at start-up). Pure: settings in, addresses out.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from scraperd.config import Notify

EVERY_CHECK = "*"


def channel(recipient: str) -> str:
    """"http" for a URL recipient, "email" for an address."""
    return "http" if "://" in recipient else "email"


def recipients(settings: Notify, check: str) -> tuple[str, ...]:
    """The recipients of `check` over the channels `notify` names, in route order, each once."""
    named = [to for checks, to in settings.routes if check in checks]
    if not named:
        named = [to for checks, to in settings.routes if EVERY_CHECK in checks]
    if not named:
        named = [tuple(settings.mail_to) if "email" in settings.notify else (),
                 (settings.http_url,) if settings.http_url and "http" in settings.notify else ()]
    wanted = set(settings.notify)
    return tuple(dict.fromkeys(r for to in named for r in to if channel(r) in wanted))


def dropped(settings: Notify) -> list[str]:
    """Routed recipients that no channel of `notify` carries (never sent to)."""
    wanted = set(settings.notify)
    return list(dict.fromkeys(r for _, to in settings.routes for r in to if channel(r) not in wanted))


def shown(recipient: str) -> str:
    """A recipient as logs show it: a URL without user:password@ (a token in the path stays: it is the
    operator's own URL, and they need to see which one failed)."""
    if "://" not in recipient:
        return recipient
    parts = urlsplit(recipient)
    if "@" not in parts.netloc:
        return recipient
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
