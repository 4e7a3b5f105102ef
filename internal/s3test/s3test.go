// Package s3test runs an S3 service for tests: versitygw, an S3 gateway over a local
// directory (its posix backend), built from its Go module and started as a process on a
// free 127.0.0.1 port, with a bucket made for the test. No S3 mock: Distribution's s3
// driver talks to it as to any S3 endpoint.
package s3test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3"

	"github.com/discoregistry/disco/internal/kubotest"
)

// Versitygw is the S3 gateway. Its Makefile sets the version it prints.
var Versitygw = &kubotest.GoTool{
	Name:        "versitygw",
	Module:      "github.com/versity/versitygw",
	Version:     "v1.8.0",
	Pkg:         "./cmd/versitygw",
	LDFlags:     "-X=main.Version=v1.8.0",
	VersionArgs: []string{"--version"},
}

// Region is the region versitygw answers for, its default.
const Region = "us-east-1"

// readyTimeout is how long versitygw may take to answer after it starts.
const readyTimeout = 30 * time.Second

// stopTimeout is how long versitygw may take to exit after SIGTERM, before SIGKILL.
const stopTimeout = 10 * time.Second

// Server is a versitygw process run by a test, with one bucket. It is stopped by its PID
// when the test ends.
type Server struct {
	Endpoint  string // http://127.0.0.1:<port>
	Bucket    string
	AccessKey string
	SecretKey string
	Dir       string // the posix backend's directory: the bucket is Dir/Bucket
	Log       string // versitygw's output
	AccessLog string // the requests it served, one a line

	t    testing.TB
	proc *os.Process
	done chan struct{}
}

// Start runs versitygw over a new temporary directory, waits until it answers, and
// creates a bucket.
//
// A test process that makes several s3 drivers while others have requests in flight (as
// Discos start and stop) should run without AWS_CA_BUNDLE: with it set, every AWS SDK v1
// session made without an HTTP client of its own, Distribution's among them, loads the
// bundle into http.DefaultClient's transport, a data race. versitygw is plain HTTP.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Versitygw.Path(t)
	dir := t.TempDir()
	s := &Server{
		Endpoint:  fmt.Sprintf("http://127.0.0.1:%d", kubotest.FreePorts(t, 1)[0]),
		Bucket:    "disco",
		AccessKey: "disco-" + strings.ToLower(rand.Text()[:8]),
		SecretKey: rand.Text(),
		Dir:       filepath.Join(dir, "data"),
		Log:       filepath.Join(dir, "versitygw.log"),
		AccessLog: filepath.Join(dir, "access.log"),
		t:         t,
	}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--access", s.AccessKey, "--secret", s.SecretKey, "--region", Region,
		"--port", strings.TrimPrefix(s.Endpoint, "http://"),
		"--quiet", "--access-log", s.AccessLog,
		"posix", s.Dir)
	// Its settings are the flags above, whatever the environment says.
	cmd.Env = kubotest.CleanEnv("VGW_", "ROOT_", "AWS_", "LOGFILE", "WEBHOOK")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = kubotest.SysProcAttr()
	err = cmd.Start()
	log.Close()
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	s.proc, s.done = cmd.Process, make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.cleanup)
	s.waitReady()
	if _, err := s.Client().CreateBucket(&s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("create bucket %s on versitygw: %v; log %s:\n%s", s.Bucket, err, s.Log, kubotest.Tail(s.Log))
	}
	return s
}

// waitReady waits until versitygw answers HTTP: an anonymous request gets 403.
func (s *Server) waitReady() {
	s.t.Helper()
	for deadline := time.Now().Add(readyTimeout); ; time.Sleep(50 * time.Millisecond) {
		if !s.running() {
			s.t.Fatalf("versitygw exited before it was ready; log %s:\n%s", s.Log, kubotest.Tail(s.Log))
		}
		if resp, err := http.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("versitygw (PID %d) not answering after %s; log %s:\n%s", s.proc.Pid, readyTimeout, s.Log, kubotest.Tail(s.Log))
		}
	}
}

// Client is an S3 client of the server, signed with its keys.
func (s *Server) Client() *s3.S3 {
	s.t.Helper()
	sess, err := session.NewSession(&aws.Config{
		Credentials:      credentials.NewStaticCredentials(s.AccessKey, s.SecretKey, ""),
		Endpoint:         aws.String(s.Endpoint),
		Region:           aws.String(Region),
		S3ForcePathStyle: aws.Bool(true),
		DisableSSL:       aws.Bool(true),
		HTTPClient:       &http.Client{},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return s3.New(sess)
}

// Params are the parameters of Distribution's s3 storage driver for the bucket, under
// rootdirectory (none when empty).
func (s *Server) Params(rootdirectory string) map[string]any {
	p := map[string]any{
		"accesskey":      s.AccessKey,
		"secretkey":      s.SecretKey,
		"region":         Region,
		"regionendpoint": s.Endpoint,
		"bucket":         s.Bucket,
		"forcepathstyle": true,
		"secure":         false,
		"v4auth":         true,
	}
	if rootdirectory != "" {
		p["rootdirectory"] = rootdirectory
	}
	return p
}

// BucketURL is the bucket's path-style URL, below which its objects are, by key.
func (s *Server) BucketURL() string { return s.Endpoint + "/" + s.Bucket }

// AllowAnonymousReads gives the bucket a policy that lets anyone GET and HEAD its
// objects, as a bucket that clients are redirected to has.
func (s *Server) AllowAnonymousReads() {
	s.t.Helper()
	policy := fmt.Sprintf(`{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::%s/*"}]}`, s.Bucket)
	if _, err := s.Client().PutBucketPolicyWithContext(context.Background(), &s3.PutBucketPolicyInput{
		Bucket: aws.String(s.Bucket),
		Policy: aws.String(policy),
	}); err != nil {
		s.t.Fatalf("bucket policy for anonymous reads: %v", err)
	}
}

// Has reports whether the bucket holds an object under key.
func (s *Server) Has(key string) bool {
	s.t.Helper()
	_, err := s.Client().HeadObject(&s3.HeadObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)})
	var rf awserr.RequestFailure
	switch {
	case err == nil:
		return true
	case errors.As(err, &rf) && rf.StatusCode() == http.StatusNotFound:
		return false
	}
	s.t.Fatalf("HEAD %s/%s: %v", s.Bucket, key, err)
	return false
}

// Empty deletes every object of the bucket.
func (s *Server) Empty() {
	s.t.Helper()
	c := s.Client()
	var keys []*s3.ObjectIdentifier
	err := c.ListObjectsV2Pages(&s3.ListObjectsV2Input{Bucket: aws.String(s.Bucket)}, func(page *s3.ListObjectsV2Output, _ bool) bool {
		for _, o := range page.Contents {
			keys = append(keys, &s3.ObjectIdentifier{Key: o.Key})
		}
		return true
	})
	if err != nil {
		s.t.Fatalf("list %s: %v", s.Bucket, err)
	}
	for batch := range slices.Chunk(keys, 1000) { // DeleteObjects takes 1000 at most
		out, err := c.DeleteObjects(&s3.DeleteObjectsInput{Bucket: aws.String(s.Bucket), Delete: &s3.Delete{Objects: batch}})
		if err == nil && len(out.Errors) > 0 {
			err = fmt.Errorf("%d not deleted, the first %s: %s", len(out.Errors), aws.StringValue(out.Errors[0].Key), aws.StringValue(out.Errors[0].Message))
		}
		if err != nil {
			s.t.Fatalf("empty %s: %v", s.Bucket, err)
		}
	}
}

// AnonymousGets counts the GETs of objects without credentials that versitygw answered
// with 200 so far: those of clients redirected to the bucket.
func (s *Server) AnonymousGets() int {
	s.t.Helper()
	b, err := os.ReadFile(s.AccessLog)
	if err != nil {
		s.t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		// owner bucket [time zone] ip requester request-id operation key uri status ...,
		// with "-" for the requester of an anonymous request.
		if f := strings.Fields(line); len(f) > 10 && f[5] == "-" && f[7] == "s3_GetObject" && f[10] == "200" {
			n++
		}
	}
	return n
}

// Pause stops versitygw's process without ending it (SIGSTOP): it takes connections and
// answers nothing, as a service that hangs, until Resume.
func (s *Server) Pause() {
	s.t.Helper()
	if !s.running() {
		return
	}
	kubotest.Pause(s.t, s.proc, "versitygw")
}

// Resume lets a paused versitygw run again (SIGCONT).
func (s *Server) Resume() {
	if s.running() {
		s.proc.Signal(syscall.SIGCONT)
	}
}

// Stop stops versitygw with SIGTERM, then SIGKILL if it has not exited within
// stopTimeout, and waits for it to exit.
func (s *Server) Stop() {
	if !s.running() {
		return
	}
	s.Resume() // a paused process takes SIGTERM only once it runs
	s.proc.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.t.Logf("versitygw (PID %d) still running %s after SIGTERM: killing it", s.proc.Pid, stopTimeout)
		s.proc.Signal(syscall.SIGKILL)
		<-s.done
	}
}

func (s *Server) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

func (s *Server) cleanup() {
	s.Stop()
	if s.t.Failed() {
		s.t.Logf("versitygw log %s, last lines:\n%s", s.Log, kubotest.Tail(s.Log))
	}
}
