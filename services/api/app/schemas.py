"""Request and error bodies of the HTTP API."""

import re
from typing import Any

from pydantic import BaseModel, Field, field_validator

# "Blank" means only white space as JSON Schema (ECMAScript's \s) defines it,
# so that the published pattern and the check agree on every character
# (Python's str.isspace() also counts U+001C..U+001F).
_NOT_WHITESPACE = "[^\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]"
_HAS_TEXT = re.compile(_NOT_WHITESPACE)


class ChatRequest(BaseModel):
    message: str = Field(
        min_length=1,
        description="The user's message (UTF-8 text), not only white space.",
        json_schema_extra={"pattern": _NOT_WHITESPACE},
    )
    conversation_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Continue this conversation; a new id is made when absent.",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not _HAS_TEXT.search(value):
            raise ValueError("message must not be blank")
        return value


class ErrorDetail(BaseModel):
    loc: list[str | int]
    type: str
    msg: str


class Error(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """Every error response, from the API and from the proxy, has this shape."""

    error: Error


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    parsed = [ErrorDetail.model_validate(detail) for detail in details] if details else None
    return ErrorBody(error=Error(code=code, message=message, details=parsed)).model_dump(exclude_none=True)
