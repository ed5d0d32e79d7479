# One image for the six Cloud Run services, from four function packages
# (webhook_fn, processor_fn, sender_fn, inbox_fn). Cloud Run picks the function per
# service through environment variables set in terraform/locals.tf:
#   service                  webhook            outbound           processor            reconciler           sender            inbox
#   FUNCTION_SOURCE          webhook_fn/main.py webhook_fn/main.py processor_fn/main.py processor_fn/main.py sender_fn/main.py inbox_fn/main.py
#   FUNCTION_TARGET          webhook            outbound           process              reconcile            send              inbox
#   FUNCTION_SIGNATURE_TYPE  http               http               cloudevent           http                 http              http
# Locally: docker run -e FUNCTION_SOURCE=webhook_fn/main.py -e FUNCTION_TARGET=webhook -p 8080:8080 IMAGE
#
# The base image is pinned to an exact tag. Where a Docker engine is at hand,
# pin its digest too: docker buildx imagetools inspect python:3.11.14-slim-bookworm
FROM python:3.11.14-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    PORT=8080

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

COPY shared/ ./shared/
COPY webhook_fn/ ./webhook_fn/
COPY processor_fn/ ./processor_fn/
COPY sender_fn/ ./sender_fn/
COPY inbox_fn/ ./inbox_fn/

USER 10001:10001

EXPOSE 8080

# Cloud Run probes the port and restarts unhealthy instances itself; a
# Docker HEALTHCHECK is ignored there.
#checkov:skip=CKV_DOCKER_2:Cloud Run ignores Docker HEALTHCHECK and uses its own startup probe on $PORT.

# exec: functions-framework (gunicorn) becomes PID 1 and receives Cloud Run's
# SIGTERM. ${VAR:?} stops the container with a clear message when the
# service forgot to say which function to run.
CMD ["/bin/sh", "-c", "exec functions-framework --source=\"${FUNCTION_SOURCE:?set FUNCTION_SOURCE}\" --target=\"${FUNCTION_TARGET:?set FUNCTION_TARGET}\" --port=\"${PORT:-8080}\""]
