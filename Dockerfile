# The images the chart and the examples run, from the release binaries of this workspace:
#   docker build --target warden -t <registry>/soc-warden/warden:0.1.0 .
#   docker build --target reference-agent -t <registry>/soc-warden/reference-agent:0.1.0 .
# Each final image is `scratch` plus the binary, the shared libraries it links (as `ldd` lists
# them), the CA bundle and a passwd line for user 65532, which it runs as. e2e/node.sh builds the
# same images with buildah from the same files (no registry is reachable there); the end-to-end
# tests run them on a real node (e2e/tests/node.rs).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p soc-warden -p reference-agent --bin warden --bin reference-agent
# Each binary with its libraries, under /out/<name>/ as the image's root.
RUN for b in warden reference-agent; do \
      mkdir -p /out/$b/usr/local/bin /out/$b/etc/ssl/certs /out/$b/tmp && \
      cp target/release/$b /out/$b/usr/local/bin/ && \
      for lib in $(ldd target/release/$b | grep -oE '/[^ ]+'); do \
        mkdir -p /out/$b$(dirname $lib) && cp -L $lib /out/$b$lib; done && \
      cp /etc/ssl/certs/ca-certificates.crt /out/$b/etc/ssl/certs/ && \
      echo 'nonroot:x:65532:65532::/:/sbin/nologin' > /out/$b/etc/passwd; done

FROM scratch AS reference-agent
COPY --from=build /out/reference-agent/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/reference-agent"]

# The operator (the chart's pods run as this user, with a read-only root filesystem). Last, so a
# plain `docker build .` builds it.
FROM scratch AS warden
COPY --from=build /out/warden/ /
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/warden"]
