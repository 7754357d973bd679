# portmux: one static binary on an empty base image.
#   docker build -t portmux .
#   docker run -p 443:8443 -v $PWD/portmux.yaml:/etc/portmux/portmux.yaml portmux
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/portmux ./cmd/portmux
# An unprivileged user and the data directory it owns, for the scratch image.
RUN echo 'portmux:x:65532:65532:portmux:/data:/sbin/nologin' > /out/passwd \
 && echo 'portmux:x:65532:' > /out/group \
 && mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build /out/portmux /usr/local/bin/portmux
COPY deploy/docker.yaml /etc/portmux/portmux.yaml
USER 65532:65532
# Certificates and the internal CA live in the volume, so they survive a
# new container (and are not re-ordered from the CA at every start).
ENV PORTMUX_TLS__STORAGE=/data/certs
VOLUME ["/data"]
# An unprivileged user cannot bind below 1024 without CAP_NET_BIND_SERVICE:
# publish 8443 as 443 (docker run -p 443:8443).
EXPOSE 8443
# No shell or curl in a scratch image: portmux checks its own admin listener.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["/usr/local/bin/portmux", "health", "-addr", "127.0.0.1:9090"]
ENTRYPOINT ["/usr/local/bin/portmux"]
CMD ["run", "-c", "/etc/portmux/portmux.yaml"]
