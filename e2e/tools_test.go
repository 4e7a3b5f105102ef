package e2e

import "github.com/discoregistry/disco/internal/kubotest"

// orasTool is the ORAS CLI, a client of the referrers API, built from its Go module as
// Kubo's ipfs command is (see kubotest.GoTool).
var orasTool = &kubotest.GoTool{Name: "oras", Module: "oras.land/oras", Version: "v1.3.6", Pkg: "./cmd/oras"}

// craneTool is go-containerregistry's crane. Its release builds set the version it prints.
var craneTool = &kubotest.GoTool{
	Name: "crane", Module: "github.com/google/go-containerregistry", Version: "v0.22.1", Pkg: "./cmd/crane",
	LDFlags: "-X=github.com/google/go-containerregistry/cmd/crane/cmd.Version=v0.22.1",
}
