"""Webhooks: signed trading alerts in (from charting tools), alerts out (to chat tools).

- :class:`WebhookServer` — an HTTP endpoint on localhost that accepts signed JSON alerts,
  rejects anything unsigned, replayed, stale, oversized, malformed or too frequent with a
  4xx that says why, and hands each valid alert to a handler in the trader's event loop.
- :class:`AlertSender` — posts fills, adaptations, lessons, drawdowns and lost
  connections to Slack/Discord/JSON webhook URLs with retries, never blocking the caller,
  and keeps a delivery log.
"""

from memlab.webhooks.alerts import AlertRejected, WebhookAlert, parse_alert
from memlab.webhooks.inbound import WebhookConfig, WebhookServer
from memlab.webhooks.outbound import AlertSender, format_body
from memlab.webhooks.router import AlertRouter

__all__ = [
    "AlertRejected",
    "AlertRouter",
    "AlertSender",
    "WebhookAlert",
    "WebhookConfig",
    "WebhookServer",
    "format_body",
    "parse_alert",
]
