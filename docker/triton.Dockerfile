# syntax=docker/dockerfile:1
# Triton for the GPU deployment: NVIDIA's tritonserver image (24.10 = Triton 2.51, the release the CPU
# fallback bundles too) with our production flags. The model repository is NOT in the image: mount it at
# /models (compose: a read-only bind mount; k8s: the ufo-models PersistentVolumeClaim). The image's native
# `onnxruntime` backend serves the repository as exported (`backend: "onnxruntime"`, KIND_GPU/KIND_AUTO).
# Build from the repository root:  docker build -f docker/triton.Dockerfile -t ufo-triton:24.10 .
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:24.10-py3
FROM ${TRITON_IMAGE}
LABEL org.opencontainers.image.title="ufo-triton" \
      org.opencontainers.image.description="NVIDIA Triton with the UFO retrieval service's flags; model repository mounted at /models"
COPY docker/healthcheck.py /opt/ufo/healthcheck.py
# NVIDIA's image ships the unprivileged user triton-server, uid 1000 (numeric: k8s runAsNonRoot can check it).
USER 1000:1000
WORKDIR /tmp
EXPOSE 8000 8001 8002
VOLUME ["/models"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "/opt/ufo/healthcheck.py", "http://127.0.0.1:8000/v2/health/ready"]
# Explicit model control (the gateway may load new versions through the repository API), the repository's
# config.pbtxt used as written (no auto-complete), ready only when every model is, metrics on :8002.
# NVIDIA's entrypoint wrapper stays in front: it sets up CUDA forward compatibility for older drivers.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "tritonserver", "--model-repository=/models", "--model-control-mode=explicit", \
            "--disable-auto-complete-config", "--strict-readiness=true", "--exit-on-error=false", \
            "--allow-metrics=true", "--allow-gpu-metrics=true", "--exit-timeout-secs=30"]
# Which models to load at start: all of them by default; pass --load-model=ufo_face ... to choose.
CMD ["--load-model=*"]
