# Stand-in for redis:7.2-alpine: Debian's redis-server (7.0) and redis-cli, run as the redis
# user with its data in /data and protected mode off, as the upstream image does.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
# The Debian suite of the base is the version pin (stable updates are security fixes only).
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data /usr/local/etc/redis \
    && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME ["/data"]
WORKDIR /data
# The package's system user (adduser picks its uid).
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
