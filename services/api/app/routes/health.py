from fastapi import APIRouter

router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Liveness for the container healthcheck and the proxy: no dependencies checked."""
    return {"status": "ok"}
