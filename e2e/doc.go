// Package e2e holds Disco's end-to-end tests: real clients (docker, skopeo, oras,
// go-containerregistry, the OCI conformance suite) and a Kubo daemon against real disco
// processes, each with its own HOME and free loopback ports. Run them with go test ./e2e/
// as root; scripts/test installs the tools they need from Debian, and the tests build
// Kubo and oras from the Go module proxy once, into os.UserCacheDir()/disco-e2e.
package e2e
