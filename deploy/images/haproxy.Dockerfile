# Stand-in for haproxy:2.6: Debian's HAProxy 2.6, reading /usr/local/etc/haproxy/haproxy.cfg
# in the foreground (master-worker), as the upstream image does.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The Debian suite of the base is the version pin (stable updates are security fixes only).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy
# The package's system user (adduser picks its uid).
# hadolint ignore=DL3066
USER haproxy
STOPSIGNAL SIGUSR1
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
