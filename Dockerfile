# ggaoed container image: the AoE target on Debian slim.
#
#   docker build -t ggaoed .
#   docker run -d --name ggaoed --network host --cap-add NET_RAW --cap-add NET_ADMIN \
#     -v /etc/ggaoed:/etc/ggaoed:ro -v /var/lib/ggaoed:/var/lib/ggaoed \
#     --device /dev/sdb ggaoed
#
# AoE is raw Ethernet: the container must share the host's network (--network host) and may
# open packet sockets (NET_RAW; NET_ADMIN for the socket buffer sizes). Exported block devices
# are passed with --device; exported files live in a mounted volume. Reload with
# `docker kill -s HUP ggaoed`; `docker stop` shuts down cleanly (SIGTERM).

# ---- build stage: Deno from npm, dependencies cached, nothing fetched at run time ----
FROM node:20-bookworm-slim AS build
WORKDIR /opt/ggaoed
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY deno.json deno.lock ./
COPY mod.ts ggaoed.ts ggaoectl.ts ggaoed.conf.dist ./
COPY src ./src
COPY ffi ./ffi
ENV DENO_DIR=/opt/deno-dir
RUN node_modules/.bin/deno cache ggaoed.ts ggaoectl.ts src/engine/worker.ts \
 && cp node_modules/@deno/linux-x64-glibc/deno /usr/local/bin/deno

# ---- run stage ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libaio1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/deno /usr/local/bin/deno
COPY --from=build /opt/deno-dir /opt/deno-dir
COPY --from=build /opt/ggaoed /opt/ggaoed
RUN rm -rf /opt/ggaoed/node_modules \
 && mkdir -p /etc/ggaoed /var/lib/ggaoed /run \
 && cp /opt/ggaoed/ggaoed.conf.dist /etc/ggaoed/ggaoed.conf.dist \
 && printf '#!/bin/sh\nexec deno run --cached-only --allow-ffi --allow-read --allow-write --allow-env --allow-sys --allow-net /opt/ggaoed/ggaoectl.ts -c /etc/ggaoed/ggaoed.conf "$@"\n' > /usr/local/bin/ggaoectl \
 && chmod +x /usr/local/bin/ggaoectl
ENV DENO_DIR=/opt/deno-dir DENO_NO_UPDATE_CHECK=1
VOLUME ["/etc/ggaoed", "/var/lib/ggaoed"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["deno", "run", "--cached-only", "--allow-ffi", "--allow-read", "--allow-write", "--allow-env", "--allow-sys", "--allow-net", "/opt/ggaoed/ggaoed.ts"]
CMD ["-c", "/etc/ggaoed/ggaoed.conf"]
