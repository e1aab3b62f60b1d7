"""Structured logs: JSON in production, carrying the delivery id and job id, never a secret."""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time

import orjson

delivery_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("delivery_id", default=None)
job_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("job_id", default=None)

_SECRET_PATTERNS = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_]{8,}|github_pat_[A-Za-z0-9_]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|(?i:(?:authorization|x-api-key)[\"']?\s*[:=]\s*[\"']?(?:token|bearer)?\s*)[^\s\"',]+)"
)


# Every match of _SECRET_PATTERNS contains one of these (in lower case): texts without any are
# returned as they are, which spares the regular expression on almost every log line.
_SECRET_MARKERS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "sk-ant-", "eyj", "private key",
                   "authorization", "x-api-key")


# The password in a URL's user part (`postgresql://prmedic:PASSWORD@db/prmedic`).
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")


def redact(text: str) -> str:
    """Replace anything that looks like a token, key, JWT or a password in a URL with a placeholder."""
    if "://" in text and "@" in text:
        text = _URL_PASSWORD.sub(r"\1[redacted]@", text)
    lowered = text.lower()
    if not any(marker in lowered for marker in _SECRET_MARKERS):
        return text
    return _SECRET_PATTERNS.sub("[redacted]", text)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.delivery_id = delivery_id_var.get()
        record.job_id = job_id_var.get()
        return True


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "delivery_id", "job_id", "message", "asctime",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.delivery_id:
            entry["delivery_id"] = record.delivery_id
        if record.job_id is not None:
            entry["job_id"] = record.job_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(context)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        if record.delivery_id:
            parts.append(f"delivery={record.delivery_id}")
        if record.job_id is not None:
            parts.append(f"job={record.job_id}")
        record.context = (" ".join(parts) + " ") if parts else ""
        return redact(super().format(record))


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # No format here prints the caller, thread or process: skip gathering them for every record
    # (the logging HOWTO's "Optimization"), which is a third of a record's cost.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log is one line per request: too much at webhook rates.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "anthropic._base_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
