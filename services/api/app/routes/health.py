"""Probes: liveness (/healthz) and readiness (/readyz). Neither checks Valkey:
a store outage would take every replica out of service at once, and the API
answers it itself (503 store_unavailable) and recovers without a restart."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.shutdown import shutting_down

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Liveness for the container healthcheck and the proxy: no dependencies checked."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz() -> JSONResponse:
    """Readiness: 503 from the moment the process begins to shut down (SIGTERM),
    so an orchestrator sends it no new streams while it drains."""
    if shutting_down():
        return JSONResponse({"status": "shutting_down"}, status_code=503)
    return JSONResponse({"status": "ready"})
