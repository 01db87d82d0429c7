"""``python -m memlab.connector``: the agent gateway's REPL as the seed ran it (``memlab agent`` is the same).

The gateway is :mod:`memlab.agent.gateway`; this module keeps the seed's entry point.
"""

from memlab.agent.gateway import Envelope, EnvelopeError, MemGPTConnector, main

__all__ = ["Envelope", "EnvelopeError", "MemGPTConnector", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
