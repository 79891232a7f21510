"""``POST /admin/v1/reload``: re-read the config file and apply provider, model and routing changes."""

from __future__ import annotations

from stellargate.admin.api import AdminAPI
from stellargate.reload import Reloader
from stellargate.web import Request, Result, Router, json_reply


class ReloadAPI:
    def __init__(self, admin: AdminAPI, reloader: Reloader) -> None:
        self._admin = admin
        self._reloader = reloader

    def register(self, router: Router) -> None:
        router.add("POST", "/admin/v1/reload", self._admin.idempotent(self.reload))

    async def reload(self, req: Request) -> Result:
        self._admin._auth(req)
        client = req.scope.get("client")
        answer = await self._reloader.reload("admin", str(client[0]) if client else None)
        await self._reloader.tell_others()
        return json_reply(answer)
