# Stand-in for locustio/locust: locust from PyPI in a virtualenv on the Python base, with
# `locust` as the entry point, as the upstream image has.
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
ARG LOCUST_VERSION
RUN python -m venv /opt/locust \
    && /opt/locust/bin/pip install --no-cache-dir "locust==${LOCUST_VERSION}" \
    && useradd --create-home --uid 1000 locust
ENV PATH=/opt/locust/bin:$PATH
WORKDIR /home/locust
USER 1000
EXPOSE 8089
ENTRYPOINT ["locust"]
