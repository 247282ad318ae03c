# ggaoed container image: the AoE target on Debian slim, with one copy of Deno.
#
#   docker build -t ggaoed .
#   docker run -d --name ggaoed --network host --cap-drop ALL --cap-add NET_RAW \
#     --read-only --tmpfs /run -v /etc/ggaoed:/etc/ggaoed:ro -v /var/lib/ggaoed:/var/lib/ggaoed \
#     --device /dev/sdb ggaoed
#   docker exec ggaoed ggaoectl stats
#
# AoE is raw Ethernet: the container must share the host's network (--network host) and may
# open packet sockets (NET_RAW; add NET_ADMIN only for send/receive-buffer-size above the
# kernel's rmem_max/wmem_max). Exported block devices are passed with --device; exported files
# live in a mounted volume. The configuration is /etc/ggaoed/ggaoed.conf. Reload with
# `docker kill -s HUP ggaoed`; `docker stop` shuts down cleanly (SIGTERM). Ceph RBD images
# (path = "rbd:POOL/IMAGE") are served through the image's librbd: mount the cluster's
# configuration and keyring read-only, e.g. -v /etc/ceph:/etc/ceph:ro.
#
# Deno comes from npm (the version pinned in package.json) for the build platform, so the same
# file builds amd64 and arm64 images (the daemon's FFI layer itself runs on x86-64 only).

# ---- build stage: Deno from npm, the program's dependencies cached, nothing fetched later ----
FROM node:20-bookworm-slim AS build
# npm's tree (Deno for this platform) lives apart from the sources: a package.json next to
# deno.json would make `deno cache` store the npm `deno` package a second time.
WORKDIR /opt/npm
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund \
 && cp "$(node -p 'require("deno/install_api.cjs").runInstall()')" /usr/local/bin/deno \
 && /usr/local/bin/deno --version
WORKDIR /opt/ggaoed
COPY deno.json deno.lock mod.ts ggaoed.ts ggaoectl.ts ggaoed.conf.dist ./
COPY src ./src
COPY ffi ./ffi
ENV DENO_DIR=/opt/deno-dir
RUN deno cache ggaoed.ts ggaoectl.ts src/engine/worker.ts

# ---- run stage: Debian slim, libaio, librbd, Deno, the sources and their cached dependencies ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libaio1 librbd1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/deno /usr/local/bin/deno
COPY --from=build /opt/deno-dir /opt/deno-dir
COPY --from=build /opt/ggaoed /opt/ggaoed
RUN mkdir -p /etc/ggaoed /var/lib/ggaoed \
 && printf '#!/bin/sh\nexec env DENO_DIR=/opt/deno-dir /usr/local/bin/deno run --cached-only --allow-read --allow-write --allow-env --allow-net /opt/ggaoed/ggaoectl.ts "$@"\n' > /usr/local/bin/ggaoectl \
 && chmod +x /usr/local/bin/ggaoectl
ENV DENO_DIR=/opt/deno-dir DENO_NO_UPDATE_CHECK=1
VOLUME ["/etc/ggaoed", "/var/lib/ggaoed"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["deno", "run", "--cached-only", "--allow-ffi", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", "--allow-net", "/opt/ggaoed/ggaoed.ts"]
CMD ["-c", "/etc/ggaoed/ggaoed.conf"]
