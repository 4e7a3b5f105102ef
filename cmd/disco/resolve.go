package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/ipfs/go-cid"

	"github.com/discoregistry/disco/internal/config"
)

// resolved is what disco resolve prints.
type resolved struct {
	Digest string `json:"digest"`
	CID    string `json:"cid"`
}

// resolve asks a running Disco for the digest of an image and the CID it is filed under:
// the digest repository, named by the digest's hex, is tagged with the CID.
func resolve(e *env, args []string) error {
	fset := flag.NewFlagSet("resolve", flag.ContinueOnError)
	insecure := fset.Bool("insecure", false, "talk plain HTTP to a registry other than localhost or 127.0.0.1")
	if err := e.parse(fset, args); err != nil {
		return helped(err)
	}
	if fset.NArg() != 1 {
		return errors.New("resolve: name one image: [HOST/]NAME[:TAG|@DIGEST]")
	}
	port := e.getenv("DISCO_PORT")
	if port == "" {
		port = strconv.Itoa(config.DefaultPort)
	}
	opts := []name.Option{name.WithDefaultRegistry("localhost:" + port)}
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(fset.Arg(0), opts...)
	if err != nil {
		return fmt.Errorf("resolve: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.NewMultiKeychain(
		envKeychain{e.getenv}, authn.DefaultKeychain))}

	repo := ref.Context()
	nameCID, nameIsCID := parseCID(repo.RepositoryStr())
	p := newProgress(e.stderr)
	if nameIsCID {
		// Disco fetches a CID it does not hold from IPFS before it answers.
		p.Show("waiting for %s to fetch %s from IPFS", repo.RegistryStr(), nameCID)
	}
	desc, err := remote.Get(ref, ropts...)
	p.Done()
	if err != nil {
		return fmt.Errorf("resolve %s: %w", ref, err)
	}
	out := resolved{Digest: desc.Digest.String(), CID: nameCID}
	if !nameIsCID {
		hexRepo := repo.Registry.Repo(desc.Digest.Hex)
		tags, err := remote.List(hexRepo, ropts...)
		var terr *transport.Error
		if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
			return fmt.Errorf("resolve %s: %s has no CID: Disco files an image under its digest and CID "+
				"when it is pushed under a tag", ref, desc.Digest)
		}
		if err != nil {
			return fmt.Errorf("resolve %s: tags of %s: %w", ref, hexRepo, err)
		}
		for _, t := range tags {
			if c, ok := parseCID(t); ok {
				out.CID = c
			}
		}
		if out.CID == "" {
			return fmt.Errorf("resolve %s: %s is tagged %q, with no CID", ref, hexRepo, tags)
		}
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// parseCID reports whether s, a repository name or a tag, is a CID, as Disco names them.
func parseCID(s string) (string, bool) {
	c, err := cid.Decode(s)
	if err != nil || c.Version() != 1 {
		return "", false
	}
	return s, true
}

// envKeychain gives the credentials of $DISCO_USERNAME and $DISCO_PASSWORD, when both
// are set, for every registry.
type envKeychain struct{ getenv func(string) string }

func (k envKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	user, pass := k.getenv("DISCO_USERNAME"), k.getenv("DISCO_PASSWORD")
	if user == "" || pass == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), nil
}
