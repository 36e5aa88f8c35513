# Redis from Debian 12: the pub/sub bus between controller nodes (pubsub.url).
FROM docker.io/library/debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/redis && chown redis:redis /var/lib/redis
VOLUME ["/var/lib/redis"]
USER redis
# Loopback by default (REDIS_BIND): host networking shares the host's interfaces.
CMD ["sh", "-c", "exec redis-server --bind \"${REDIS_BIND:-127.0.0.1}\" --port \"${REDIS_PORT:-6379}\" --dir /var/lib/redis --appendonly yes --save '' --protected-mode yes"]
HEALTHCHECK --interval=5s --timeout=3s --retries=5 \
  CMD ["sh", "-c", "redis-cli -h \"${REDIS_BIND:-127.0.0.1}\" -p \"${REDIS_PORT:-6379}\" ping | grep -q PONG"]
