"""Webhooks: signed trading alerts in (from charting tools), alerts out (to chat tools).

- :class:`WebhookServer` — an HTTP endpoint on localhost that accepts signed JSON alerts,
  rejects anything unsigned, replayed, stale, oversized, malformed or too frequent with a
  4xx that says why, and hands each valid alert to a handler in the trader's event loop.
- :class:`AlertSender` — posts fills, adaptations, lessons, drawdowns and lost
  connections to Slack/Discord/JSON webhook URLs with retries, never blocking the caller,
  and keeps a delivery log.
- :class:`DrawdownState` — the equity peak and the drawdown levels already announced,
  kept in the memory folder so a restart never announces a level twice.

An alert is handled exactly once across crashes: its id is claimed provisionally and
settled only once its order and decision are on disk; a restart finishes or releases
what a killed process left half-done (see :mod:`memlab.webhooks.inbound`).
"""

from memlab.webhooks.alerts import AlertRejected, WebhookAlert, parse_alert
from memlab.webhooks.inbound import WebhookConfig, WebhookServer
from memlab.webhooks.outbound import AlertSender, DrawdownState, format_body
from memlab.webhooks.router import AlertRouter

__all__ = [
    "AlertRejected",
    "AlertRouter",
    "AlertSender",
    "DrawdownState",
    "WebhookAlert",
    "WebhookConfig",
    "WebhookServer",
    "format_body",
    "parse_alert",
]
