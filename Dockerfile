# The operator image the Helm chart runs: `docker build -t <registry>/soc-warden/warden:0.1.0 .`
# (Not built by CI: this machine has no container runtime. The binary it packages is the one the
# tests run.)
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warden -p soc-warden

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/warden /usr/local/bin/warden
# The chart's pod runs as this user, with a read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/warden"]
