"""Keep Python's cyclic garbage collector off the long-lived heap of a server process.

A loaded Rasa model (TensorFlow, spaCy, the graph) is millions of Python objects that live as long as the
process. CPython's full collection walks all of them: measured with ``gc.callbacks`` under the 20-sender load,
each full collection of the Rasa server took about a quarter of a second, stalling every conversation on the
event loop, about once per 60 messages. ``gc.freeze()`` moves every object alive at that moment into the
permanent generation, which collections skip. Objects frozen are still freed by reference counting; only
reference cycles among them are never collected, so it runs once the long-lived objects exist (after the model
is loaded, and once more after the first request has built what is created lazily), not per request.
"""
from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def freeze_long_lived_objects(when: str) -> None:
    gc.collect()
    gc.freeze()
    logger.debug("gc: %d objects frozen (%s)", gc.get_freeze_count(), when)
