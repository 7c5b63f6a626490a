"""GET /metrics: Prometheus metrics. Not routed by the proxy: scrape the API directly."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app import metrics
from app.config import Settings, get_settings

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def get_metrics(settings: Annotated[Settings, Depends(get_settings)]) -> Response:
    body, content_type = metrics.render(settings.prometheus_multiproc_dir)
    return Response(body, media_type=content_type)
