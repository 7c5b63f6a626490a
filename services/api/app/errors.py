"""Exception handlers: every error leaves the API as one JSON shape.

``{"error": {"code": ..., "message": ..., "details": [...]}}`` (see
:class:`app.schemas.ErrorBody`). Validation details never echo the input:
a rejected message may be large or sensitive.

An exception no handler expects is a 500 ``internal_error`` whose body says
nothing of it. Starlette's outermost middleware calls that handler, sends its
answer if no response has started, then raises the exception again, so the
server still logs its traceback. A stream's failure after its first byte is
not one of these: the reply ends with an ``error`` event (app.reply_store).
"""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import access_log
from app.schemas import error_body


class ApiError(Exception):
    def __init__(self, status_code: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.headers = headers


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    access_log.note(error=exc.code)
    return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status_code, headers=exc.headers)


def _unparseable_body(exc: HTTPException) -> bool:
    """FastAPI's 400 for a body json.loads could not read other than by a
    JSONDecodeError: nested past the recursion limit (RecursionError) or not
    UTF-8 (UnicodeDecodeError). To the client it is invalid JSON all the same."""
    return exc.status_code == 400 and isinstance(exc.__cause__, RecursionError | ValueError)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if _unparseable_body(exc):
        return JSONResponse(error_body("invalid_json", "The request body is not valid JSON."), status_code=400)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    access_log.note(error=code)
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors: list[Any] = list(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        access_log.note(error="invalid_json")
        return JSONResponse(error_body("invalid_json", "The request body is not valid JSON."), status_code=400)
    details = [{"loc": list(error["loc"]), "type": error["type"], "msg": error["msg"]} for error in errors]
    access_log.note(error="validation_error")
    summary = "; ".join(f"{'.'.join(map(str, d['loc'][1:])) or 'body'}: {d['msg']}" for d in details)
    return JSONResponse(error_body("validation_error", summary, details), status_code=422)


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("internal_error", "The server failed to answer. Retry shortly."), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
