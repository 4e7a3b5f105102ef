// Package e2e holds Disco's end-to-end tests: real clients (docker, skopeo,
// go-containerregistry, the OCI conformance suite) against real disco processes, each
// with its own HOME and free loopback ports. Run them with go test ./e2e/ as root;
// scripts/test installs the tools they need.
package e2e
