# syntax=docker/dockerfile:1
#
# collector's image: a static binary on distroless, running as the nonroot user (65532). It writes
# nothing but the WAL (--wal-dir, a volume), so the root filesystem can be read-only.
# Build: make image (docker or podman).

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
	go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/collector ./cmd/collector
# RHACM's operator runs /usr/bin/metrics-collector: under that name collector runs `collector run`
# with the operator's flags (deploy/kubernetes/overlays/rhacm). A relative symlink, copied as a
# directory entry so that it stays a link.
RUN mkdir -p /out/links && ln -s collector /out/links/metrics-collector

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/collector /usr/bin/collector
COPY --from=build /out/links/ /usr/bin/
USER 65532:65532
# /metrics, /healthz, /readyz, POST /-/reload with --listen=:8080 (the manifests' setting).
EXPOSE 8080
ENTRYPOINT ["/usr/bin/collector"]
CMD ["--help"]
