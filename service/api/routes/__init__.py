"""One module per resource; `ROUTERS` is what the app mounts."""

from service.api.routes import embed, health, items, models, search, tasks, verify

ROUTERS = (health.router, tasks.router, models.router, embed.router, items.router, search.router,
           verify.router)

__all__ = ["ROUTERS"]
