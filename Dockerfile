# imagine-bot in a container: `docker compose up -d --build` (compose.yaml), or see README "Run it as a service".
#
# Base image: CUDA 13.0, the CUDA release of the torch wheel pip installs from PyPI on Linux (torch 2.14.x
# is built for cu130). The "base" flavour holds only the CUDA runtime's core and the settings the NVIDIA
# Container Toolkit reads (NVIDIA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES, and NVIDIA_REQUIRE_CUDA, which
# refuses to start on a host driver too old for CUDA 13.0, driver 580+). PyPI's torch brings its own
# cuBLAS, cuDNN and NCCL as nvidia-* wheels, so a "-runtime" or "-cudnn-runtime" image would carry a second
# copy of them (about 3 GB) that torch never loads. Raising torch to a wheel built for another CUDA major
# version means moving this tag with it.
FROM nvidia/cuda:13.0.0-base-ubuntu24.04

# python3-venv: Ubuntu 24.04 protects its system Python (PEP 668), so the project goes into /opt/venv.
# No C compiler: ENGINE_COMPILE (torch.compile) is off by default; an owner who turns it on adds
# build-essential and python3-dev to this line. Versions come from the Ubuntu release the tag above fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A user of its own (not root) runs the bot; uid 10001 stays clear of the image's ubuntu user (1000).
ARG UID=10001
RUN groupadd --system --gid "${UID}" imagine \
    && useradd --system --uid "${UID}" --gid imagine --create-home --home-dir /home/imagine imagine

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache

WORKDIR /app
# Only what the bot runs (.dockerignore keeps .env, .venv, data/ and the tests out of the image).
COPY pyproject.toml README.md bot.py ./
COPY core ./core
COPY cogs ./cogs
COPY engine ./engine
COPY deploy/healthcheck.py ./deploy/healthcheck.py
# The code and the venv stay root's (the bot cannot change them); data/ and the caches are the bot's.
# (Ubuntu 24.04's venv pip, 24.0, installs pyproject projects as they are: no upgrade, nothing unpinned.)
RUN python3 -m venv /opt/venv \
    && pip install . \
    && mkdir -p /app/data /cache/huggingface \
    && chown -R imagine:imagine /app/data /cache

# Numeric, so that runAsNonRoot-style checks can see it is not root.
USER ${UID}:${UID}
# History database, uploads and finals (DATABASE_PATH=data/history.sqlite3), and the model weights
# (HF_HOME, 12-25 GB) plus the engine's own cache (XDG_CACHE_HOME/imagine-bot): both outlive the container.
VOLUME ["/app/data", "/cache"]

# The bot stops on SIGTERM: it finishes the running job for up to SHUTDOWN_TIMEOUT seconds (default 30),
# so give it longer (`docker stop -t 90`; compose.yaml's stop_grace_period).
STOPSIGNAL SIGTERM

# There is no /healthz yet: deploy/healthcheck.py checks that a bot.py process of this user runs (not
# stopped, not a zombie) and that the history database, once created, answers a read. It does not see the Discord
# connection. The start period covers the first weight download and model load.
HEALTHCHECK --interval=60s --timeout=15s --start-period=30m --retries=3 \
    CMD ["python", "deploy/healthcheck.py"]

CMD ["python", "bot.py"]
