# hdxrq: API and workers in one image. Not used by the tests; see docker-compose.yml.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends gdal-bin nodejs npm \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY package*.json ./
RUN if [ -f package.json ]; then npm ci --no-audit --no-fund; fi
COPY . .

RUN useradd --system --home /app hdxrq && mkdir -p /tmp/hdxrq && chown hdxrq /tmp/hdxrq
USER hdxrq
ENV HDX_GIS_TMP=/tmp/hdxrq
EXPOSE 5000
CMD ["python", "hdxrq.py", "serve", "--host", "0.0.0.0", "--port", "5000"]
