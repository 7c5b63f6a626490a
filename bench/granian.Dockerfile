# The alternative compared in the benchmark: the same app served by granian
# (a Rust ASGI server) instead of gunicorn + uvicorn. Benchmark only.
ARG PYTHON_IMAGE=python:3.13-slim
FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN python3 -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=ca_bundle,required=false \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
    && pip install --require-virtualenv -r /tmp/requirements.txt granian==2.8.7
WORKDIR /srv
COPY app ./app
RUN groupadd --system app && useradd --system --gid app --no-create-home app
USER app
# The API image's liveness check, as cheap under load (services/api/Dockerfile says why).
HEALTHCHECK --interval=5s --timeout=10s --start-period=30s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8000 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && read -r status <&3 && [[ $status == HTTP/1.?' 200 '* ]]"]
CMD ["granian", "--interface", "asgi", "--host", "0.0.0.0", "--port", "8000", "--workers", "1", "app.main:app"]
