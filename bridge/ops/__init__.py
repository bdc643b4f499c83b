"""Everything under /ops (and the health and metrics routes beside it).

`api.py` holds the JSON routes, `page.py` the status page (HTML), `auth.py` the page's token, session cookie
and CSRF checks; `templates/` and `static/` ship inside the package.
"""

from starlette.routing import Route

from bridge.ops import api, page
from bridge.state import BridgeState


def routes(state: BridgeState) -> list[Route]:
    return [*api.routes(state), *page.routes(state)]


__all__ = ["routes"]
