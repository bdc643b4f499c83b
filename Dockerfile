FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY mappings ./mappings
RUN pip install --no-compile -e . \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin bridge \
    && mkdir -p /var/lib/bridge && chown bridge /var/lib/bridge

USER 10001
EXPOSE 8080
VOLUME ["/var/lib/bridge"]
ENV BRIDGE_CONFIG=/etc/bridge/bridge.yaml
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
CMD ["bridge", "serve", "--host", "0.0.0.0", "--port", "8080"]
