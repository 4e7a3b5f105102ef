package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// manifestTypes is what a mirror accepts of manifests: every kind Distribution stores.
var manifestTypes = strings.Join([]string{
	v1.MediaTypeImageManifest, v1.MediaTypeImageIndex,
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
}, ", ")

// maxManifestSize bounds a manifest read from the upstream, as global bounds one from IPFS.
const maxManifestSize = 4 << 20

// upstream is the registry a mirror pulls through from. It holds the credentials, which
// go with requests to it and nowhere else.
type upstream struct {
	url     string // as configured, for messages
	reg     name.Registry
	auth    authn.Authenticator
	base    http.RoundTripper
	timeout time.Duration
	// transports are authorized for one repository each (a bearer token's scope is one
	// repository), by repository name.
	transports *lru.Cache[string, http.RoundTripper]
}

func newUpstream(remoteURL, username, password string, timeout time.Duration) (*upstream, error) {
	// The URL, kept for messages and hashed into the peers' protocol name, must hold no
	// credentials; an error about it does not quote it.
	u, err := url.Parse(remoteURL)
	if err != nil {
		return nil, errors.New("proxy.remoteurl: not a URL")
	}
	if u.User != nil {
		return nil, errors.New("proxy.remoteurl: credentials in the URL; give them as the username and password")
	}
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("proxy.remoteurl: %w", err)
	}
	auth := authn.Anonymous
	if username != "" {
		auth = authn.FromConfig(authn.AuthConfig{Username: username, Password: password})
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	base.TLSHandshakeTimeout = timeout
	base.ResponseHeaderTimeout = timeout
	base.MaxIdleConnsPerHost = 32
	transports, err := lru.New[string, http.RoundTripper](256)
	if err != nil {
		return nil, err
	}
	return &upstream{url: remoteURL, reg: reg, auth: auth, base: base, timeout: timeout, transports: transports}, nil
}

// UpstreamError is a request to the upstream that failed: no answer, or an error status.
type UpstreamError struct {
	URL    string
	Status int // 0 when the upstream did not answer
	Err    error
}

func (e *UpstreamError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("upstream %s: %v", e.URL, e.Err)
	}
	return fmt.Sprintf("upstream %s: %d %s: %v", e.URL, e.Status, http.StatusText(e.Status), e.Err)
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// notFound reports whether the upstream answered that it does not have what was asked.
func notFound(err error) bool {
	var ue *UpstreamError
	return errors.As(err, &ue) && ue.Status == http.StatusNotFound
}

// transport returns a transport authorized to pull from the repository repo.
func (u *upstream) transport(ctx context.Context, repo string) (http.RoundTripper, error) {
	if t, ok := u.transports.Get(repo); ok {
		return t, nil
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	scope := u.reg.Repo(repo).Scope(transport.PullScope)
	t, err := transport.NewWithContext(ctx, u.reg, u.auth, u.base, []string{scope})
	if err != nil {
		return nil, &UpstreamError{URL: u.url, Err: err}
	}
	u.transports.Add(repo, t)
	return t, nil
}

// do sends a request for /v2/<repo>/<rest> and returns the response if its status is
// 200. The caller closes the body.
func (u *upstream) do(ctx context.Context, method, repo, rest, accept string) (*http.Response, error) {
	t, err := u.transport(ctx, repo)
	if err != nil {
		return nil, err
	}
	target := fmt.Sprintf("%s://%s/v2/%s/%s", u.reg.Scheme(), u.reg.RegistryStr(), repo, rest)
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return nil, &UpstreamError{URL: target, Err: err}
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden {
			u.transports.Remove(repo) // let the next request authorize again
		}
		return nil, &UpstreamError{URL: target, Status: res.StatusCode, Err: errorBody(res)}
	}
	return res, nil
}

// errorBody returns what an error response says, from its OCI error body if it has one.
func errorBody(res *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if json.Unmarshal(b, &body) == nil && len(body.Errors) > 0 {
		var msgs []string
		for _, e := range body.Errors {
			msgs = append(msgs, strings.TrimSpace(e.Code+" "+e.Message))
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	if s := strings.TrimSpace(string(b)); s != "" && len(s) < 200 {
		return errors.New(s)
	}
	return errors.New("no error body")
}

// headManifest returns the descriptor of the manifest ref (a tag or a digest) names.
func (u *upstream) headManifest(ctx context.Context, repo, ref string) (v1.Descriptor, error) {
	res, err := u.do(ctx, http.MethodHead, repo, "manifests/"+ref, manifestTypes)
	if err != nil {
		return v1.Descriptor{}, err
	}
	res.Body.Close()
	d, err := digest.Parse(res.Header.Get("Docker-Content-Digest"))
	if err != nil {
		// A registry need not give the digest on HEAD: read the manifest.
		b, mediaType, gerr := u.getManifest(ctx, repo, ref, "")
		if gerr != nil {
			return v1.Descriptor{}, gerr
		}
		return v1.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}, nil
	}
	size, _ := strconv.ParseInt(res.Header.Get("Content-Length"), 10, 64)
	return v1.Descriptor{MediaType: res.Header.Get("Content-Type"), Digest: d, Size: size}, nil
}

// getManifest returns the manifest ref names and its media type. If want is set, the
// manifest must have that digest.
func (u *upstream) getManifest(ctx context.Context, repo, ref string, want digest.Digest) ([]byte, string, error) {
	res, err := u.do(ctx, http.MethodGet, repo, "manifests/"+ref, manifestTypes)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxManifestSize+1))
	if err != nil {
		return nil, "", &UpstreamError{URL: res.Request.URL.String(), Err: err}
	}
	if len(b) > maxManifestSize {
		return nil, "", &UpstreamError{URL: res.Request.URL.String(), Err: fmt.Errorf("manifest larger than %d bytes", maxManifestSize)}
	}
	if want != "" && want.Algorithm().FromBytes(b) != want {
		return nil, "", &UpstreamError{URL: res.Request.URL.String(), Err: fmt.Errorf("the manifest does not match digest %s", want)}
	}
	return b, res.Header.Get("Content-Type"), nil
}

// blobSize returns the size of the blob d.
func (u *upstream) blobSize(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	res, err := u.do(ctx, http.MethodHead, repo, "blobs/"+d.String(), "")
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	if res.ContentLength < 0 {
		return 0, &UpstreamError{URL: res.Request.URL.String(), Err: errors.New("no Content-Length")}
	}
	return res.ContentLength, nil
}

// getBlob streams the blob d and returns its size, -1 if the upstream does not say. The
// stream fails once the upstream sends nothing for its timeout; the caller closes it.
func (u *upstream) getBlob(ctx context.Context, repo string, d digest.Digest) (io.ReadCloser, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	res, err := u.do(ctx, http.MethodGet, repo, "blobs/"+d.String(), "")
	if err != nil {
		cancel()
		return nil, 0, err
	}
	r := &idleReader{body: res.Body, idle: u.timeout, url: res.Request.URL.String()}
	r.timer = time.AfterFunc(u.timeout, cancel)
	r.timer.Stop()
	r.cancel = cancel
	return r, res.ContentLength, nil
}

// idleReader is a response body that is cut off when a read waits idle for the upstream
// to send something. Only the upstream's silence counts: time the caller takes between
// reads, to send what it read to a slow client, does not.
type idleReader struct {
	body   io.ReadCloser
	cancel context.CancelFunc
	idle   time.Duration
	url    string
	timer  *time.Timer // cancels the request when it fires
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.timer.Reset(r.idle)
	n, err := r.body.Read(p)
	fired := !r.timer.Stop()
	if err != nil && err != io.EOF {
		if fired {
			err = fmt.Errorf("sent nothing for %s: %w", r.idle, err)
		}
		err = &UpstreamError{URL: r.url, Err: err}
	}
	return n, err
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	r.cancel()
	return r.body.Close()
}

// tags lists the tags of repo, n at most after last, as the upstream pages them.
func (u *upstream) tags(ctx context.Context, repo string, n int, last string) ([]string, error) {
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		q.Set("last", last)
	}
	rest := "tags/list"
	if len(q) > 0 {
		rest += "?" + q.Encode()
	}
	res, err := u.do(ctx, http.MethodGet, repo, rest, "")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var list struct{ Tags []string }
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&list); err != nil {
		return nil, &UpstreamError{URL: res.Request.URL.String(), Err: err}
	}
	return list.Tags, nil
}
