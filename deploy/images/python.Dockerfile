# Stand-in for python:3.11-slim-bookworm, on the debootstrap base: Debian's Python 3.11 with
# venv, `python` on PATH, and the build host's CA bundle (containers reach PyPI over TLS only
# with it). Built by deploy/images.sh when no registry answers.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The Debian suite of the base is the version pin (stable updates are security fixes only).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv python-is-python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A file of its own, so a later `update-ca-certificates` in a derived image cannot replace it.
COPY host-ca-bundle.crt /etc/ssl/certs/host-ca-bundle.crt
ENV SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt \
    PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-bundle.crt \
    LANG=C.UTF-8
CMD ["python3"]
