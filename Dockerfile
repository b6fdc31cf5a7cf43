# syntax=docker/dockerfile:1
# The GameVerse host as a container image: built with the steps CI runs (tools/gv deps, a Release
# build), then a slim Debian 12 runtime with the host, gvctl, the plugins and the SDK, run as a
# user without privileges. README "Deployment" shows how to run it.
#   docker build -t gameverse .
# The build and install steps are scripts (deploy/image/) that tests/deploy/install_test.sh runs
# too, so what the image holds is tested on machines without a container engine.

FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN deploy/image/build.sh /build \
 && deploy/image/install.sh /build /out

FROM debian:12-slim
# The shared libraries the host, gvctl and the plugins load (readelf -d NEEDED, by `dpkg -S`): the
# runtime packages of the -dev packages in tools/gv's PACKAGES. ca-certificates: rediss:// and
# PostgreSQL over TLS check servers against the system's CAs.
ARG RUNTIME_PACKAGES="libgrpc++1.51 libgrpc29 libprotobuf32 libprotobuf-lite32 libabsl20220623 libssl3 \
  libfmt9 libspdlog1.10 libtomlplusplus3 libsqlite3-0 libpqxx-6.4 libpq5 libhiredis0.14 libsodium23 libicu72 \
  ca-certificates"
RUN apt-get update \
 && apt-get install -y --no-install-recommends $RUNTIME_PACKAGES \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 gameverse \
 && useradd --system --uid 10001 --gid gameverse --home-dir /var/lib/gameverse --shell /usr/sbin/nologin gameverse
COPY --from=build /out/ /
# Nothing the binaries need is missing, and the host's own files belong to its user.
RUN ! ldd /usr/local/bin/gameverse /usr/local/bin/gvctl /usr/local/lib/gameverse/plugins/*.so | grep 'not found' \
 && chown gameverse:gameverse /var/lib/gameverse
USER 10001:10001
WORKDIR /var/lib/gameverse
# gvctl inside the container (the HEALTHCHECK, `docker exec ... gvctl list`) talks to this host.
# The port serves TLS: the CA that signed its certificate, and a name the certificate carries.
ENV GAMEVERSE_ADDR=127.0.0.1:50051 \
    GAMEVERSE_TLS_CA=/etc/gameverse/tls/ca.pem \
    GAMEVERSE_TLS_SERVER_NAME=gameverse
# 50051: gRPC (every plugin, health, reflection, admin); 8080: /metrics, /healthz, /readyz.
EXPOSE 50051 8080
# SIGTERM drains: calls in flight get [server] drain_timeout_ms (10 s) before the host exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["gvctl", "health"]
ENTRYPOINT ["gameverse"]
CMD ["--config", "/etc/gameverse/config/gameverse.toml"]
