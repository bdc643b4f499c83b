"""Everything under /ops (and the health and metrics routes beside it).

`api.py` holds the JSON routes; the status page and its auth get modules of their own beside it.
"""

from bridge.ops.api import routes

__all__ = ["routes"]
