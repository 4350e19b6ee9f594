# consent-svc image: docker build -t consent-svc . && docker run -p 8000:8000 consent-svc
#
# In production set DATABASE_URL, CONSENT_SVC_MASTER_KEY and CONSENT_SVC_LOOKUP_SECRET (base64 of 32 bytes
# each, from a secret store). Without DATABASE_URL the service starts an embedded PostgreSQL and generates
# its keys under CONSENT_SVC_DATA_DIR: fine for a try-out, but that data and those keys live and die with
# the container unless a volume is mounted there. PostgreSQL refuses to run as root, one more reason the
# image runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md ./
COPY consent_svc/ consent_svc/
# Editable install: the package finds migrations/ and policies/ next to its source directory (/app), which
# a regular install would move into site-packages. /app is copied to the same path in the final stage.
RUN pip install -e .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CONSENT_SVC_DATA_DIR=/var/lib/consent-svc
RUN groupadd --system --gid 10001 consent \
 && useradd --system --uid 10001 --gid consent --no-create-home --home-dir /var/lib/consent-svc --shell /usr/sbin/nologin consent \
 && install -d -o consent -g consent -m 0700 /var/lib/consent-svc
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# Code stays owned by root: the service can read it, not change it.
COPY --from=build /app/ /app/
COPY migrations/ migrations/
COPY policies/ policies/
USER consent
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4)"]
CMD ["consent-svc", "serve", "--host", "0.0.0.0", "--port", "8000"]
