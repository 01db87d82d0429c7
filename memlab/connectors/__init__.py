"""Connections to brokers and data: the paper broker (more to come: ConnectionManager, feeds)."""

from memlab.connectors.paper_broker import Bar, PaperBroker

__all__ = ["Bar", "PaperBroker"]
