# The livinglab image: one image, every role (`livinglab migrate | ingest | process | api | retention | notify | simulate`).
# docker-compose.yml runs it once per role; docs/operations.md describes the deployment.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY livinglab ./livinglab
COPY ingest ./ingest
COPY processing ./processing
COPY api ./api
COPY simulators ./simulators
COPY notify ./notify
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 livinglab
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER livinglab
# numba caches compiled kernels here; the kernels are warmed up when a processor starts.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# 8000: the API; 9100: an ingester's /health and /metrics (LIVINGLAB_HEALTH_PORT).
EXPOSE 8000 9100
ENTRYPOINT ["livinglab"]
CMD ["--help"]
