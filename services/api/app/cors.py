"""CORS with refusals in the API's error shape.

Starlette's CORSMiddleware answers a refused preflight with a text/plain
"Disallowed CORS origin" (status 400); every other error of this API is JSON
(``{"error": {...}}``), so clients parse one format. The decision itself is
Starlette's, unchanged.
"""

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from app.schemas import error_body


class JsonCorsMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "content-type")}
        body = error_body("cors_refused", f"This cross-origin request is not allowed ({refused}).")
        return JSONResponse(body, status_code=400, headers=headers)
