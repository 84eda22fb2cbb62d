# surfrecon GPU worker: a Ray node that joins the cluster and runs jobs on its GPU.
#
#   docker build -f docker/worker-gpu.Dockerfile --build-arg TCNN_CUDA_ARCHITECTURES=86 -t surfrecon-worker-gpu .
#   docker run --gpus all -e RAY_ADDRESS=head:6379 -e AWS_ACCESS_KEY_ID=... surfrecon-worker-gpu
#
# Ubuntu 24.04 ships Python 3.12, the same minor version as the API image (Ray requires one).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-devel-ubuntu24.04

FROM ${CUDA_IMAGE}

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG RAY_VERSION=2.60.0
# Compute capabilities to build tiny-cuda-nn for (no GPU is visible at build time):
# 75 Turing, 80 A100, 86 RTX 30xx/A10, 89 RTX 40xx/L4, 90 H100.
ARG TCNN_CUDA_ARCHITECTURES="75;80;86;89;90"
ARG TCNN_REF=v2.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TORCH_EXTENSIONS_DIR=/opt/torch_extensions \
    TCNN_CUDA_ARCHITECTURES=${TCNN_CUDA_ARCHITECTURES}

# Ubuntu's security updates move these versions, so they are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git ca-certificates \
       libgomp1 libusb-1.0-0 \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install --no-cache-dir "ray[default]==${RAY_VERSION}" "setuptools==80.9.0" "wheel==0.45.1" "ninja==1.13.0"

# tiny-cuda-nn's PyTorch bindings, compiled against this torch for the chosen architectures.
RUN pip install --no-cache-dir --no-build-isolation \
    "git+https://github.com/NVlabs/tiny-cuda-nn@${TCNN_REF}#subdirectory=bindings/torch"

WORKDIR /opt/surfrecon
COPY pyproject.toml README.md ./
COPY recon ./recon
COPY meshing ./meshing
COPY service ./service
RUN pip install --no-cache-dir . \
    && python -m recon.encodings.build \
    && useradd --system --uid 10001 --create-home --home-dir /home/surfrecon surfrecon \
    && chown -R surfrecon:surfrecon /opt/torch_extensions

USER 10001:10001

# Joins the cluster at $RAY_ADDRESS (host:port of the head) and blocks; Ray detects the GPUs.
# S3 credentials (AWS_*) must be in this container's environment: jobs read inputs and write
# artifacts through the artifact store, never through the API host's disk.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["ray", "health-check", "--skip-version-check"]
ENTRYPOINT ["sh", "-c", "exec ray start --address=\"${RAY_ADDRESS:?set RAY_ADDRESS to the head, host:port}\" --block --disable-usage-stats \"$@\"", "ray-worker"]
