# Stand-in for prom/prometheus: Debian's Prometheus server, with the upstream image's paths
# (/etc/prometheus/prometheus.yml, data in /prometheus) and user (nobody).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The Debian suite of the base is the version pin (stable updates are security fixes only).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus
VOLUME ["/prometheus"]
WORKDIR /prometheus
USER 65534
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
