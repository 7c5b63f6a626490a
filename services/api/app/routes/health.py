"""Readiness, ``GET /readyz``: whether this process takes new streams now.

An orchestrator (Kubernetes' readiness probe) sends new streams only to
processes that answer 200; failing it stops new streams, never the ones
already open, and never restarts anything. It fails while the process:

- shuts down (SIGTERM, app/shutdown.py): 503 ``shutting_down``, so no new
  stream goes to a process that is ending its own;
- is at capacity, already generating ``CHAT_MAX_REPLIES`` replies: 503
  ``at_capacity``, exactly while a new message would get 503
  ``too_many_streams`` here, and 200 again as soon as a reply ends.

It does not check Valkey: a store outage would take every replica out of
service at once, and the API answers it itself (503 store_unavailable) and
recovers without a restart. Liveness, ``GET /healthz``, is not a route: it
is answered before routing (app/liveness.py).
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import StoreDep
from app.shutdown import shutting_down

router = APIRouter()


@router.get("/readyz", include_in_schema=False)
async def readyz(store: StoreDep) -> JSONResponse:
    if shutting_down():
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    if store.at_capacity:
        return JSONResponse({"status": "at_capacity"}, status_code=503)
    return JSONResponse({"status": "ready"})
