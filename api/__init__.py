"""The HTTP API: routes, auth, problem details, live updates and the dashboard's assets."""

from api.app import create_app
from api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
