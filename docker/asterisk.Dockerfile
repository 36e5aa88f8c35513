# Asterisk 22 with the product's asterisk-config/. Debian 12 ships no Asterisk; sid has 22
# (the lab's root is sid for the same reason, lab/asterisk.py). No secret is in the image: the
# entrypoint writes the AMI user and the agents' SIP passwords from secret files at each start.
# Build from the repository root:  podman build --format docker --network host -f docker/asterisk.Dockerfile -t ivr-asterisk .
FROM docker.io/library/debian:sid-slim
ENV DEBIAN_FRONTEND=noninteractive
# Check-Valid-Until: sid's Release file expires within days; a machine whose clock runs ahead of
# the mirror's signature (seen on the lab's machines) would refuse it.
RUN apt-get -o Acquire::Check-Valid-Until=false update -q \
 && apt-get install -y -q --no-install-recommends asterisk asterisk-modules \
      asterisk-core-sounds-en-gsm asterisk-core-sounds-en-wav asterisk-moh-opsound-gsm \
 && rm -rf /var/lib/apt/lists/* \
 && cp -a /etc/asterisk /etc/asterisk.dist
COPY asterisk-config /usr/share/ivr/asterisk-config
COPY docker/asterisk-entrypoint /usr/local/bin/
# The controller renders the flows' prompts into the shared prompts volume; Asterisk plays them
# as sounds/en/ivr/<name> (prompts.prefix), so that path is a link into the volume.
RUN mkdir -p /var/lib/ivr/prompts/ivr \
 && ln -sfn /var/lib/ivr/prompts/ivr "$(readlink -f /usr/share/asterisk/sounds/en)/ivr"
VOLUME ["/var/lib/ivr/prompts", "/var/spool/asterisk", "/var/log/asterisk"]
ENTRYPOINT ["/usr/local/bin/asterisk-entrypoint"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["asterisk", "-rx", "core show uptime"]
