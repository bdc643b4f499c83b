FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src

# A regular (not editable) install: the default mappings, the demo's samples and the status page's templates
# travel inside the package (setup.py, docs/adr/0004-package-data.md), so `docker run IMAGE bridge demo` works.
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY bridge ./bridge
COPY mappings ./mappings
COPY fixtures/stripe ./fixtures/stripe
RUN pip install --no-compile . \
    && mkdir -p /etc/bridge && cp -r mappings /etc/bridge/mappings \
    && cd / && rm -rf /src \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/bridge && chown bridge /var/lib/bridge

WORKDIR /var/lib/bridge
USER 10001
EXPOSE 8080
VOLUME ["/var/lib/bridge"]
# bridge.yaml goes to /etc/bridge/ (mount it); `mappings: ./mappings` there means /etc/bridge/mappings, which
# holds the shipped mappings unless you mount your own.
ENV BRIDGE_CONFIG=/etc/bridge/bridge.yaml
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
CMD ["bridge", "serve", "--host", "0.0.0.0", "--port", "8080"]
