# PostgreSQL 15 from Debian 12, for the controller's journeys, customers and leases.
# Built here rather than pulled: the same Debian base as the other images, no registry needed.
FROM docker.io/library/debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/*
COPY docker/postgres-entrypoint /usr/local/bin/
ENV PGDATA=/var/lib/postgresql/data PATH=/usr/lib/postgresql/15/bin:$PATH
VOLUME ["/var/lib/postgresql/data"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=5 \
  CMD ["sh", "-c", "pg_isready -q -h 127.0.0.1 -p ${POSTGRES_PORT:-5432} -d ivr -U ivr"]
