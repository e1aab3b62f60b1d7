"""What a job cost at list price: tokens per model and session runtime, summed into one figure a
team can budget by.

Pure: it reads the usage the platform reports (the session's `usage`, its threads' usage and
agent models) and prices it. The platform's own `list_cost` for the tokens wins when it is
given; the table below only prices what it does not cover (and the per-model split, which the
platform does not give).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Session runtime is charged for the time the session is `running` (its `usage.active_seconds`).
RUNTIME_USD_PER_HOUR = 0.08

# List prices in USD per million tokens (input, output), by model family, for the Claude 4.5
# models: Anthropic's public pricing page (anthropic.com/pricing), written down 2026-12-03. Cache reads are charged at 0.1 x input,
# cache writes (5-minute) at 1.25 x input. A model not in the table is priced as the middle
# family, so that an unknown model is never free.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "opus": (5.0, 25.0),
    "sonnet": (3.0, 15.0),
    "haiku": (1.0, 5.0),
}
DEFAULT_PRICE = PRICES_PER_MTOK["sonnet"]
CACHE_READ_FACTOR = 0.1
CACHE_WRITE_FACTOR = 1.25

TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


def price_for(model: str) -> tuple[float, float]:
    """(input, output) USD per million tokens for `model`, by its family."""
    for family, price in PRICES_PER_MTOK.items():
        if family in model:
            return price
    return DEFAULT_PRICE


@dataclass
class ModelUsage:
    """One model's tokens in a job."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @classmethod
    def from_usage(cls, usage: dict[str, Any] | None) -> "ModelUsage":
        """From a platform usage object (session, thread or `model_usage` of a model request)."""
        usage = usage or {}
        write = usage.get("cache_creation_input_tokens")
        if write is None:
            creation = usage.get("cache_creation") or {}
            write = sum(int(v or 0) for v in creation.values())
        return cls(input=int(usage.get("input_tokens") or 0), output=int(usage.get("output_tokens") or 0),
                   cache_read=int(usage.get("cache_read_input_tokens") or 0), cache_write=int(write or 0))

    def add(self, other: "ModelUsage") -> None:
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write

    def usd(self, model: str) -> float:
        inp, out = price_for(model)
        return (self.input * inp + self.output * out + self.cache_read * inp * CACHE_READ_FACTOR
                + self.cache_write * inp * CACHE_WRITE_FACTOR) / 1_000_000


@dataclass
class JobCost:
    """A job's (or one session's) cost: tokens per model, runtime, and their list-price total."""

    models: dict[str, ModelUsage] = field(default_factory=dict)
    runtime_seconds: float = 0.0
    # The platform's own list cost of the tokens (USD), when it reported one.
    platform_tokens_usd: float | None = None

    @property
    def runtime_usd(self) -> float:
        return self.runtime_seconds / 3600 * RUNTIME_USD_PER_HOUR

    @property
    def tokens_usd(self) -> float:
        if self.platform_tokens_usd is not None:
            return self.platform_tokens_usd
        return sum(u.usd(m) for m, u in self.models.items())

    @property
    def total_usd(self) -> float:
        return self.tokens_usd + self.runtime_usd

    def plus(self, other: JobCost | None) -> JobCost:
        """This cost and `other` together (a job's sessions: the router's and the review's)."""
        if other is None:
            return self
        models = {m: ModelUsage(u.input, u.output, u.cache_read, u.cache_write) for m, u in self.models.items()}
        for model, usage in other.models.items():
            models.setdefault(model, ModelUsage()).add(usage)
        return JobCost(models=models, runtime_seconds=self.runtime_seconds + other.runtime_seconds,
                       platform_tokens_usd=self.tokens_usd + other.tokens_usd)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> JobCost:
        """Back from `as_dict` (a cost kept in the store)."""
        data = data or {}
        models = {m: ModelUsage(int(u.get("input") or 0), int(u.get("output") or 0), int(u.get("cache_read") or 0),
                                int(u.get("cache_write") or 0)) for m, u in (data.get("models") or {}).items()}
        tokens = data.get("tokens_usd")
        return cls(models=models, runtime_seconds=float(data.get("runtime_seconds") or 0.0),
                   platform_tokens_usd=None if tokens is None else float(tokens))

    def as_dict(self) -> dict[str, Any]:
        """For the job's result (JSON)."""
        return {
            "total_usd": round(self.total_usd, 4), "tokens_usd": round(self.tokens_usd, 4),
            "runtime_seconds": round(self.runtime_seconds, 1), "runtime_usd": round(self.runtime_usd, 4),
            "models": {m: {"input": u.input, "output": u.output, "cache_read": u.cache_read,
                           "cache_write": u.cache_write, "usd": round(u.usd(m), 4)}
                       for m, u in sorted(self.models.items())},
        }

    def summary_line(self) -> str:
        """Compact, for a check run summary or an answer footer: per model, then runtime."""
        parts = [f"{m}: {_k(u.input)} in, {_k(u.output)} out, {_k(u.cache_read)} cache read, "
                 f"{_k(u.cache_write)} cache write" for m, u in sorted(self.models.items())]
        parts.append(f"runtime {_duration(self.runtime_seconds)} (${self.runtime_usd:.2f})")
        return " · ".join(parts)


def session_cost(usage: dict[str, Any] | None, threads: list[tuple[str, dict[str, Any] | None]] | None = None,
                 *, default_model: str = "unknown") -> JobCost:
    """A session's cost from its `usage` (cumulative; carries `list_cost` and `active_seconds`) and,
    when known, its threads as (agent model, thread usage) for the split by model. Without
    threads the whole usage is put on `default_model`."""
    usage = usage or {}
    cost = JobCost(runtime_seconds=float(usage.get("active_seconds") or 0.0))
    if threads:
        for model, thread_usage in threads:
            cost.models.setdefault(model or default_model, ModelUsage()).add(ModelUsage.from_usage(thread_usage))
    elif usage:
        cost.models[default_model] = ModelUsage.from_usage(usage)
    list_cost = usage.get("list_cost") or {}
    if list_cost.get("amount") is not None and (list_cost.get("currency") or "USD") == "USD":
        try:
            cost.platform_tokens_usd = int(list_cost["amount"]) / 100
        except (TypeError, ValueError):
            pass
    return cost


def spent_before_failing(exc: Any, model: str) -> JobCost | None:
    """What a session that failed (`SessionFailed`, `SessionRetryable`) had cost, from the usage the
    error carries (all of it on `model`: its threads were not read); None when it is not known."""
    usage, cents = getattr(exc, "usage", None), getattr(exc, "list_cost_cents", None)
    if usage is None and cents is None:
        return None
    cost = session_cost(usage, default_model=model)
    if cost.platform_tokens_usd is None and cents is not None:
        cost.platform_tokens_usd = cents / 100
    return cost


def cost_from_result(result: dict[str, Any] | None) -> float | None:
    """A stored job result's list-price total (USD), or None when it has none."""
    if not result:
        return None
    cost = result.get("cost")
    if isinstance(cost, dict) and cost.get("total_usd") is not None:
        return float(cost["total_usd"])
    if result.get("list_cost_usd") is not None:
        return float(result["list_cost_usd"])
    return None


def _k(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else str(n)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
