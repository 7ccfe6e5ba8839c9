# amaqc QC service image. CPU by default; for GPU workers build with a CUDA base, e.g.
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
# (the CUDA base must provide python3.11; torch's pinned wheel brings its own CUDA libraries)
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AMAQC_DATA_DIR=/data
WORKDIR /srv/amaqc

# dependencies first (cached layer), then the code
COPY pyproject.toml README.md ./
COPY model/__init__.py model/_version.py model/
RUN mkdir -p app training && touch app/__init__.py training/__init__.py \
    && python3 -m pip install --no-cache-dir . && python3 -m pip uninstall -y amaqc
COPY . .
RUN python3 -m pip install --no-cache-dir --no-deps -e . \
    && useradd --create-home --uid 10001 amaqc && mkdir -p /data && chown amaqc /data
USER amaqc
VOLUME ["/data"]
EXPOSE 8000 11112
HEALTHCHECK --interval=15s --timeout=5s CMD python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
ENTRYPOINT ["amaqc"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
