"""``kubekeep ui``: a local web interface over a repository, a thin shell over ``kubekeep.api``.

``app`` builds the ASGI application (Starlette, server-rendered Jinja2 pages, a little
JavaScript), ``access`` guards every request with the access token, ``catalog`` caches what
pages read from the repository, ``restoring`` runs restore dry runs and confirmed restores,
``rendering`` turns snapshot content into HTML, and ``server`` binds the socket and runs it.
"""

from kubekeep.ui.app import create_app
from kubekeep.ui.server import Server, bind

__all__ = ["Server", "bind", "create_app"]
