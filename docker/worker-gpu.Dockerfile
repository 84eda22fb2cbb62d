# surfrecon GPU worker: a Ray node that joins the cluster and runs jobs on its GPU.
#
#   docker build -f docker/worker-gpu.Dockerfile --build-arg TCNN_CUDA_ARCHITECTURES=86 -t surfrecon-worker-gpu .
#   docker run --gpus all -e RAY_ADDRESS=head:6379 -e AWS_ACCESS_KEY_ID=... surfrecon-worker-gpu
#
# Ubuntu 24.04 ships Python 3.12, the same minor version as the API image (Ray requires one).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04
ARG NODE_IMAGE=node:22-bookworm-slim

# The web page's three.js (the wheel carries it; the workers build the same wheel as the API).
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY service/web/package.json service/web/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM ${CUDA_IMAGE}

# torch's CUDA build; its version, Ray's and every other one come from constraints.txt.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
# Compute capabilities to build tiny-cuda-nn for (no GPU is visible at build time):
# 75 Turing, 80 A100, 86 RTX 30xx/A10, 89 RTX 40xx/L4, 90 H100.
ARG TCNN_CUDA_ARCHITECTURES="75;80;86;89;90"
ARG TCNN_REF=v2.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TORCH_EXTENSIONS_DIR=/opt/torch_extensions \
    TCNN_CUDA_ARCHITECTURES=${TCNN_CUDA_ARCHITECTURES}

# Ubuntu's security updates move these versions, so they are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git ca-certificates \
       g++ libgomp1 libusb-1.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/surfrecon
COPY pyproject.toml setup.py README.md constraints.txt ./
COPY docker/install.sh ./docker/install.sh
COPY recon ./recon
COPY meshing ./meshing
COPY service ./service
COPY --from=web /web/node_modules/three ./service/web/node_modules/three
# The same steps as the API image (and tests/test_images.py), with torch's CUDA build.
RUN bash docker/install.sh /opt/venv .

# tiny-cuda-nn's PyTorch bindings, compiled against this torch for the chosen architectures
# (setuptools, wheel and ninja are already in the venv at their locked versions).
RUN pip install --no-cache-dir --no-build-isolation \
    "git+https://github.com/NVlabs/tiny-cuda-nn@${TCNN_REF}#subdirectory=bindings/torch" \
    && useradd --system --uid 10001 --create-home --home-dir /home/surfrecon surfrecon \
    && chown -R surfrecon:surfrecon /opt/torch_extensions

USER 10001:10001

# Joins the cluster at $RAY_ADDRESS (host:port of the head) and blocks; Ray detects the GPUs.
# S3 credentials (AWS_*) must be in this container's environment: jobs read inputs and write
# artifacts through the artifact store, never through the API host's disk.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["ray", "health-check", "--skip-version-check"]
ENTRYPOINT ["sh", "-c", "exec ray start --address=\"${RAY_ADDRESS:?set RAY_ADDRESS to the head, host:port}\" --block --disable-usage-stats \"$@\"", "ray-worker"]
