"""Delivery: each destination's rate limit and retry backoff, and the apprise sender.

A Destination is one configured URL. Its `key` (a digest of the URL) names
it in the outbox and in the heartbeat's item, its `label` (scheme and host
as apprise prints them with privacy on: `json://127.0.0.1:8089`,
`discord://1...5`, `tgram://1...f`) in logs, status and /metrics; the URL
itself is shown nowhere. Rate limit: one message at a time, at least
60 / `max_messages_per_minute` seconds after the previous one (monotonic
clock, kept in memory: a restart forgets it), so the first alert goes at
once and what arrives in the meantime goes together, in one digest. A failed
send waits retry_initial, doubling up to retry_max (the failures in a row are
kept in the outbox, so this survives a restart), before the destination is
tried again; a success ends the wait.

The sender is apprise, imported in the child only (the supervisor never
loads it). Each destination has its own plugin object, with `timeout` as
its connect and read timeout. A send that trickles past them is not cut
short here: the heartbeat before it goes stale and the supervisor kills this
worker; its successor is handed the destination it hung on and backs off from it.
"""
import hashlib
import logging
import re
import urllib.parse

from workers.alerts.settings import is_loopback_without_credentials

log = logging.getLogger("alerts")


def url_key(url):
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class SendFailed(Exception):
    """A send did not go through; the message says why (never the URL)."""


class Destination:
    def __init__(self, target, settings, label):
        self.source = target.source  # how the config names it ("${MDW_ALERT_X}", a loopback URL, urls_file line 3)
        self.url = target.url
        self.problem = target.problem  # why it cannot be used at all (a variable not set), or None
        self.key = url_key(target.url) if target.url else url_key(target.source)
        self.label = label
        self.settings = settings
        self.next_at = 0.0  # the rate limit: no message before this (monotonic)
        self.failures = 0  # consecutive
        self.retry_at = 0.0
        self.last_error = None

    @property
    def item(self):
        """What the heartbeat before a send names: enough to recognise the destination, nothing secret."""
        return f"{self.label} [{self.key}]"

    def ready(self, now):
        return self.url is not None and now >= self.retry_at and now >= self.next_at

    def _paced(self, now):
        self.next_at = now + 60.0 / self.settings.max_messages_per_minute

    def on_sent(self, now):
        self._paced(now)
        self.failures, self.retry_at, self.last_error = 0, 0.0, None

    def on_failed(self, now, why):
        self.failures += 1  # the backoff, not the pace, spaces the retries
        self.last_error = why
        return self.back_off(now)

    def back_off(self, now):
        """Wait before the next try, from the failures in a row (also a predecessor's)."""
        delay = min(self.settings.retry_max, self.settings.retry_initial * 2 ** min(self.failures - 1, 30))
        self.retry_at = now + delay
        return delay


def label_of(url, private_url=None):
    """scheme://host[:port] of the URL as apprise prints it with privacy on (secrets cut to '1...5')."""
    if private_url is None and not is_loopback_without_credentials(url):
        return f"{urllib.parse.urlsplit(url).scheme or '?'}://?"  # apprise could not say which part is secret
    parts = urllib.parse.urlsplit(private_url or url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def scrub(text, url, label):
    """`text` without any long piece of `url` that its label does not show (a token in a path)."""
    shown = set(re.split(r"[/:@?&=#]+", label))
    for piece in sorted(set(re.split(r"[/:@?&=#]+", url)), key=len, reverse=True):
        if len(piece) >= 6 and piece not in shown and piece in text:
            text = text.replace(piece, "...")
    return text


class AppriseSender:
    """send(destination, title, body) through apprise; SendFailed with apprise's reason."""

    def __init__(self, timeout):
        import apprise

        self.apprise = apprise
        self.asset = apprise.AppriseAsset(storage_mode="memory")
        self.timeout = timeout
        self.plugins = {}

    def label(self, url):
        plugin = self._plugin(url)
        return label_of(url, plugin.url(privacy=True) if plugin else None)

    def _plugin(self, url):
        if url not in self.plugins:
            plugin = self.apprise.Apprise.instantiate(url, asset=self.asset)
            if plugin:
                plugin.socket_connect_timeout = plugin.socket_read_timeout = self.timeout
            self.plugins[url] = plugin or None
        return self.plugins[url]

    def send(self, destination, title, body):
        plugin = self._plugin(destination.url)
        if plugin is None:
            raise SendFailed("apprise does not understand this URL (an unknown scheme, or parts missing)")
        with self.apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
            ok = plugin.notify(body=body, title=title)
        if not ok:
            said = [line for line in captured.getvalue().splitlines() if line.strip()]
            raise SendFailed(scrub("; ".join(said[-2:]) or "the service refused the message", destination.url,
                                   destination.label)[:200])
