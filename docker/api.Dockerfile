# surfrecon API image (CPU): the HTTP API, the dispatcher process and the Ray head use it.
#
#   docker build -f docker/api.Dockerfile -t surfrecon-api .
#
# Python must match the GPU worker image (Ray needs one Python minor version per cluster); every
# Python package version comes from constraints.txt, the same file set-up uses.
ARG PYTHON_VERSION=3.12
ARG NODE_IMAGE=node:22-bookworm-slim

# The web page's three.js at the version service/web/package-lock.json pins; the wheel build
# below copies the files the page loads into the package.
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY service/web/package.json service/web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:${PYTHON_VERSION}-slim-bookworm

# The CPU build of torch (the default index's Linux build bundles CUDA).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
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

WORKDIR /opt/surfrecon
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY docker/install.sh ./docker/install.sh
COPY recon ./recon
COPY meshing ./meshing
COPY service ./service
COPY --from=web /web/node_modules/three ./service/web/node_modules/three
# The same steps tests/test_images.py runs: torch, the wheel with the cluster extras, the kernel.
RUN bash docker/install.sh /opt/venv . \
    && useradd --system --uid 10001 --create-home --home-dir /home/surfrecon surfrecon \
    && mkdir -p /data \
    && chown -R surfrecon:surfrecon /data /opt/torch_extensions

USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

CMD ["surfrecon", "serve", "--host", "0.0.0.0", "--port", "8000"]
