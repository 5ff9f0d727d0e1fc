# The logdrop sidecar image: the static musl binary and a CA bundle, nothing
# else. Built by `make image` (scripts/build-image.sh), which puts both files
# in the build context; `ARCH=aarch64` for Graviton tasks.
FROM scratch
ARG ARCH=x86_64
# Mozilla's bundle (Python's certifi, pinned in requirements-lock.txt): without
# it every TLS handshake to S3 fails with UnknownIssuer.
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY sidecar-${ARCH}-unknown-linux-musl /logdrop-sidecar
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# Root, for the official tomcat image's defaults: Tomcat runs as root with
# catalina.sh's UMASK 0027, so its logs are root:root 0640, and the sidecar
# keeps its offsets in <log dir>/.logdrop on the root-owned shared volume.
# The task definition drops every capability: root needs none for files it
# owns. The non-root variant is in the README (Deploy).
USER 0:0
ENTRYPOINT ["/logdrop-sidecar"]
