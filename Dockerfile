# The livinglab image: one image, every role (`livinglab ingest | process | api | simulate | migrate`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY livinglab ./livinglab
COPY ingest ./ingest
COPY processing ./processing
COPY api ./api
COPY simulators ./simulators
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 livinglab
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER livinglab
ENV NUMBA_CACHE_DIR=/tmp/numba-cache PYTHONUNBUFFERED=1
ENTRYPOINT ["livinglab"]
CMD ["--help"]
