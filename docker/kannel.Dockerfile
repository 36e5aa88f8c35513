# Kannel (SMS gateway, `--profile sms`): bearerbox + smsbox from Debian 12. The SMSC is the
# carrier's, so its group is the operator's file (docker/kannel-smsc.conf, mounted read-only);
# the sendsms password and the controller's inbound key come from secret files at start.
FROM docker.io/library/debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends kannel \
 && rm -rf /var/lib/apt/lists/*
COPY docker/kannel-entrypoint /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/kannel-entrypoint"]
# bash, not sh: Debian's sh (dash) has no /dev/tcp, so the check could never pass
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${KANNEL_SENDSMS_PORT:-13013}"]
