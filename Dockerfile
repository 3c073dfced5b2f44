# scraping-service node image.
#   docker build -t scraping-service:0.1.0 .
#   docker run -p 12345:12345 -v $PWD/agent.yaml:/etc/agent/agent.yaml scraping-service:0.1.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install . \
    && rm -rf /src \
    && groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid agent --home-dir /var/lib/agent --shell /usr/sbin/nologin agent \
    && mkdir -p /etc/agent /var/lib/agent/data \
    && chown -R agent:agent /var/lib/agent

# A minimal default config (single node, embedded KV store); mount your own over it.
COPY deploy/docker/agent.yaml /etc/agent/agent.yaml

WORKDIR /var/lib/agent
USER 10001:10001
VOLUME ["/var/lib/agent/data"]
EXPOSE 12345

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:12345/-/ready', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["scraping-service"]
CMD ["-config.file=/etc/agent/agent.yaml", "-server.http.address=0.0.0.0:12345", "-config.expand-env"]
