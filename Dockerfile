# Disco's container image: the disco binary, built beforehand, static, on an empty base, so
# it builds with no access to any image registry. ./scripts/image builds it:
#
#   CGO_ENABLED=0 go build -ldflags=-s -o disco ./cmd/disco
#   cp /etc/ssl/certs/ca-certificates.crt image/
#   docker build -t disco .     # DOCKER_BUILDKIT=0 where the buildx plugin is missing
#
# Run it with a volume for the data; the registry is on 1970, the IPFS swarm on 4001:
#
#   docker run -d -v disco:/var/lib/disco -p 1970:1970 -p 4001:4001 disco
FROM scratch

# The user disco (uid and gid 1970) owns /var/lib/disco. The CA certificates are for a
# node with public: true, whose content routing speaks HTTPS.
COPY image/passwd image/group /etc/
COPY image/ca-certificates.crt /etc/ssl/certs/
COPY image/config.yaml /etc/disco/
COPY --chown=1970:1970 image/data/ /var/lib/disco/
COPY disco /usr/local/bin/

USER 1970:1970
ENV HOME=/var/lib/disco \
    REGISTRY_CONFIGURATION_PATH=/etc/disco/config.yaml
WORKDIR /var/lib/disco
VOLUME /var/lib/disco
# the registry, and the IPFS node's swarm (TCP)
EXPOSE 1970 4001
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s CMD ["/usr/local/bin/disco", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/disco"]
CMD ["serve"]
