"""Local development: webhook deliveries from a smee.io-style channel (PRMEDIC_WEBHOOK_PROXY_URL).

The App's webhook URL is the channel; GitHub posts there; the channel streams each delivery as a
server-sent event (`Accept: text/event-stream`). As smee.io sends them, a delivery is a `message`
event whose `data:` is one JSON object: the delivery's HTTP headers as keys (lower-case, as
Node gives them: `x-github-event`, `x-github-delivery`, `x-hub-signature-256`, …), its parsed
JSON body under `body`, and `query` and `timestamp` besides; `ready` and `ping` events carry
nothing. smee-client (what Probot uses) re-serialises `body` with `JSON.stringify` and posts it
with the other keys as headers; the same is done here, but the delivery goes straight into the
server's intake (`WebhookHandler.deliver`): the signature is still checked, and a delivery that
fails it is dropped and logged. The stream is reopened with exponential backoff when it drops.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from app.errors import describe

log = logging.getLogger("prmedic.webhook_proxy")

Deliver = Callable[[str, Mapping[str, str], bytes], Awaitable[web.Response]]
# Keys of the event that are not the delivery's headers (`host` and `content-length` describe
# the request to the channel, not this one).
NOT_HEADERS = {"body", "query", "timestamp", "host", "content-length", "content-type"}
MAX_LINE_BYTES = 64 * 1024 * 1024  # a 25 MiB body, escaped


@dataclass
class Event:
    type: str = "message"
    data: list[str] = field(default_factory=list)
    id: str | None = None


class EventStreamParser:
    """The `text/event-stream` format, one line at a time: returns an event when one is complete."""

    def __init__(self) -> None:
        self._event = Event()
        self.retry_ms: int | None = None

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            event, self._event = self._event, Event()
            return event if event.data else None
        if line.startswith(":"):
            return None  # a comment (keep-alive)
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._event.data.append(value)
        elif name == "event":
            self._event.type = value or "message"
        elif name == "id":
            self._event.id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None


@dataclass(frozen=True)
class ProxiedDelivery:
    headers: CIMultiDict[str]
    body: bytes

    @property
    def name(self) -> str:
        return f"{self.headers.get('x-github-event', '?')} {self.headers.get('x-github-delivery', '?')}"


def delivery_of(data: str) -> ProxiedDelivery | None:
    """The delivery a `message` event carries, or None if it carries none."""
    try:
        fields = json.loads(data)
    except ValueError:
        return None
    if not isinstance(fields, dict) or "body" not in fields:
        return None
    headers: CIMultiDict[str] = CIMultiDict(
        (key, str(value)) for key, value in fields.items()
        if key.lower() not in NOT_HEADERS and isinstance(value, (str, int, float)) and not isinstance(value, bool))
    body = fields["body"]
    # What JSON.stringify makes of the parsed body (compact, non-ASCII kept): the bytes GitHub
    # signed, for the compact JSON GitHub sends.
    raw = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return ProxiedDelivery(headers, raw.encode("utf-8"))


class WebhookProxy:
    def __init__(self, url: str, deliver: Deliver, *, initial_backoff: float = 1.0, max_backoff: float = 60.0,
                 read_timeout: float = 90.0) -> None:
        self.url = url
        self.deliver = deliver
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        # smee.io sends a ping every 30 s: a stream silent for longer is dead.
        self.read_timeout = read_timeout
        self.connections = 0

    async def run(self) -> None:
        """Listen until cancelled; reconnect after every drop."""
        backoff = self.initial_backoff
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.read_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                parser = EventStreamParser()
                opened = self.connections
                try:
                    await self._listen(http, parser)
                    reason = "the stream ended"
                except Exception as exc:  # noqa: BLE001 - whatever broke the stream, it is reopened
                    reason = describe(exc)
                if self.connections > opened:  # it was open: start the backoff afresh
                    backoff = self.initial_backoff
                if parser.retry_ms is not None:
                    backoff = max(backoff, parser.retry_ms / 1000)
                wait = backoff * random.uniform(0.8, 1.2)
                log.warning("webhook proxy: %s (%s); reconnecting in %.1f s", self.url, reason, wait)
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, self.max_backoff)

    async def _listen(self, http: aiohttp.ClientSession, parser: EventStreamParser) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        async with http.get(self.url, headers=headers) as answer:
            if answer.status != 200:
                raise aiohttp.ClientResponseError(answer.request_info, answer.history, status=answer.status,
                                                  message=f"the channel answered {answer.status}")
            self.connections += 1
            log.info("webhook proxy: listening to %s", self.url)
            pending: list[bytes] = []  # the line being read (a delivery is one `data:` line, up to 25 MiB)
            size = 0
            async for chunk in answer.content.iter_any():
                *complete, rest = chunk.split(b"\n")
                for part in complete:
                    line = b"".join([*pending, part]).decode("utf-8", errors="replace")
                    pending, size = [], 0
                    event = parser.feed(line)
                    if event is not None and event.type == "message":
                        await self._handle("\n".join(event.data))
                pending.append(rest)
                size += len(rest)
                if size > MAX_LINE_BYTES:
                    raise ValueError(f"an event line is over {MAX_LINE_BYTES} bytes")

    async def _handle(self, data: str) -> None:
        delivery = delivery_of(data)
        if delivery is None:
            log.warning("webhook proxy: an event that is not a delivery was ignored")
            return
        try:
            answer = await self.deliver("application/json", delivery.headers, delivery.body)
        except Exception:  # noqa: BLE001 - one bad delivery must not end the stream
            log.exception("webhook proxy: delivery %s failed", delivery.name)
            return
        text = answer.text or ""
        if answer.status < 300:
            log.info("webhook proxy: delivery %s → %d %s", delivery.name, answer.status, text[:200])
        else:
            log.warning("webhook proxy: delivery %s dropped: %d %s", delivery.name, answer.status, text[:200])
