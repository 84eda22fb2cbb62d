# surfrecon API image (CPU): the HTTP API, the dispatcher process and the Ray head use it.
#
#   docker build -f docker/api.Dockerfile -t surfrecon-api .
#
# Python must match the GPU worker image (Ray needs one Python minor version per cluster).
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG RAY_VERSION=2.60.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TORCH_EXTENSIONS_DIR=/opt/torch_extensions \
    SURFRECON_DATA_DIR=/data

# g++ builds the CPU hash-grid kernel (torch cpp_extension); libgomp1 and libusb are for open3d.
# Debian's security updates move these versions, so they are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ libgomp1 libusb-1.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv \
    && pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "ray[default]==${RAY_VERSION}"

WORKDIR /opt/surfrecon
COPY pyproject.toml README.md ./
COPY recon ./recon
COPY meshing ./meshing
COPY service ./service
# torch and ray are already satisfied with the pins above; this adds the rest.
RUN pip install --no-cache-dir . \
    && python -m recon.encodings.build \
    && useradd --system --uid 10001 --create-home --home-dir /home/surfrecon surfrecon \
    && mkdir -p /data \
    && chown -R surfrecon:surfrecon /data /opt/torch_extensions

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["surfrecon", "serve", "--host", "0.0.0.0", "--port", "8000"]
