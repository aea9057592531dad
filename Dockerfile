# Image for the compose services (ingester, worker, trainer, migrate).
# TORCH picks the build: the default wheel from PyPI carries CUDA (GPU workers);
# pass --build-arg TORCH=torch==2.13.0+cpu with a CPU index for a small CPU-only image.
FROM python:3.11-slim
ARG TORCH=torch==2.13.0
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN pip install "${TORCH}"
COPY pyproject.toml README.md ./
COPY core core
COPY ingest ingest
COPY broker broker
COPY db db
COPY migrations migrations
COPY models models
COPY training training
COPY stream stream
COPY cli cli
RUN pip install . && useradd --create-home app && mkdir -p /var/lib/arxiv-stream \
    && chown app /var/lib/arxiv-stream
USER app
CMD ["arxiv-stream", "--help"]
