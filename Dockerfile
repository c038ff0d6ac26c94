# hdxrq: one image for the API, the workers and the scheduler (docker-compose.yml runs them all).
#
#   docker build -t hdxrq .
#
# Three stages: the map preview's and the API docs' front-end files come from npm in `assets`, the Python
# virtualenv is built in `venv`, and `runtime` gets both plus the source, with neither node/npm nor
# compilers nor test tools. Checked by tests/ops/test_container_files.py (hadolint and the rules below);
# no image is built by the tests.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && mkdir -p /assets/maplibre-gl \
    && cp -r node_modules/maplibre-gl/dist /assets/maplibre-gl/dist \
    && cp -r node_modules/swagger-ui-dist /assets/swagger-ui-dist

FROM ${PYTHON_IMAGE} AS venv
# Runtime requirements only: requirements-dev.txt (pytest, ruff, mypy, ...) never enters the image.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
# ogr2ogr for the imports; pinned by the base image's Debian release (bookworm: GDAL 3.6).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gdal-bin \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin hdxrq \
    && install -d -o hdxrq -g hdxrq /tmp/hdxrq
COPY --from=venv /opt/venv /opt/venv
WORKDIR /app
# .dockerignore keeps var/, .venv, node_modules, .git, tests and docs out. The source stays root's: the
# service cannot rewrite its own code.
COPY . .
COPY --from=assets /assets /app/node_modules
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HDX_GIS_TMP=/tmp/hdxrq
USER 10001:10001
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
# The API. Workers and the scheduler run the same image with another command (docker-compose.yml).
CMD ["python", "hdxrq.py", "serve", "--host", "0.0.0.0", "--port", "5000"]
