"""When to retry a broker call and how long to wait: ccxt's "try again" errors, exponential backoff with jitter.

ccxt separates errors a retry can cure (``OperationFailed``: ``NetworkError`` with its
``RequestTimeout``, ``RateLimitExceeded``, ``DDoSProtection``, ``ExchangeNotAvailable``,
and ``BadResponse`` for a garbled answer) from errors only the caller can fix
(``ExchangeError``: bad symbol, insufficient funds, invalid order, authentication).
Only the first kind is retried.

>>> policy = RetryPolicy(attempts=4, base=0.5, cap=4.0, jitter=0.0)
>>> [policy.delay(i) for i in range(4)]
[0.5, 1.0, 2.0, 4.0]
>>> is_retryable(ccxt.RequestTimeout("slow")), is_retryable(ccxt.InsufficientFunds("poor"))
(True, False)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import ccxt

from memlab.errors import InvalidInputError

#: Errors that say "try again": the request may not have reached the exchange, or its
#: answer did not reach us. Everything else from ccxt says "you are wrong".
RETRYABLE: tuple[type[BaseException], ...] = (ccxt.OperationFailed,)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the wait before retry ``i`` (0-based) is
    ``min(cap, base * 2**i)`` shrunk by a random fraction up to ``jitter``, so many
    clients that failed together do not come back together."""

    attempts: int = 5
    base: float = 0.25
    cap: float = 8.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise InvalidInputError(
                f"retry policy needs attempts >= 1, base/cap >= 0 and jitter in [0, 1], got {self}"
            )

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        wait = min(self.cap, self.base * 2.0 ** attempt)
        if self.jitter:
            wait *= 1.0 - self.jitter * (rng or random).random()
        return wait
