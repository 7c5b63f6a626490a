"""Log lines as JSON objects, for log pipelines (``CHAT_LOG_FORMAT=json``).

gunicorn.conf.py picks this formatter or the plain one. Each line carries
time, level, logger and message; an access line (app.access_log) adds its
fields (method, path, status, duration_ms, request_id, outcome, tokens...).
"""

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "access", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
