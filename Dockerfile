# One image for the three programs (api, worker, janitor); compose.yaml
# picks the command. Debian 12, like the machines the project is built on.
FROM debian:12 AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config libcivetweb-dev libcjson-dev librabbitmq-dev \
        libpq-dev libssl-dev libseccomp-dev libarchive-dev libcurl4-openssl-dev python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake cmake
COPY common common
COPY api api
COPY worker worker
COPY janitor janitor
COPY migrations migrations
COPY tests tests
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j"$(nproc)" \
        --target opencode-api opencode-worker opencode-janitor

FROM debian:12 AS agent
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nodejs npm ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/opencode
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM debian:12
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libcivetweb1 libcjson1 librabbitmq4 libpq5 libssl3 libseccomp2 libarchive13 libcurl4 bubblewrap socat ca-certificates \
        git ripgrep \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/build/opencode-api /src/build/opencode-worker /src/build/opencode-janitor /usr/local/bin/
COPY --from=agent /opt/opencode/node_modules/opencode-linux-x64/bin/opencode /usr/local/bin/opencode
ENV DATA_DIR=/data OPENCODE_BIN=/usr/local/bin/opencode API_LISTEN=0.0.0.0:8000
VOLUME /data
EXPOSE 8000
CMD ["opencode-api"]
