package s3test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/service/s3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/distribution/distribution/v3/registry/storage/driver/testsuites"
)

var large = flag.Bool("large", false, "run the storage driver suite's 5 GiB stream over versitygw too")

// skipped are the cases of Distribution's suite that TestDriverSuite leaves out, with why.
func skipped() map[string]string {
	if *large {
		return nil
	}
	return map[string]string{
		"TestWriteReadLargeStreams": "its 5 GiB stream takes versitygw about 2 minutes, " +
			"over CI's budget for these tests (multipart uploads are run by the other cases); " +
			"go test ./internal/s3test -run TestDriverSuite -large runs it",
	}
}

// TestDriverSuite runs Distribution's storage driver suite against its s3 driver over
// versitygw, made as Disco makes a cache's driver, by factory.Create.
func TestDriverSuite(t *testing.T) {
	s := Start(t)
	d, err := factory.Create(context.Background(), "s3", s.Params("/suite"))
	if err != nil {
		t.Fatal(err)
	}
	skip := skipped()
	for name, why := range skip {
		t.Run(name, func(t *testing.T) { t.Skip(why) })
	}
	defer selectSuiteCases(t, skip)()
	testsuites.Driver(t, func() (storagedriver.StorageDriver, error) { return d, nil }, false)
}

// selectSuiteCases has the next testify suite run every case of Distribution's driver
// suite but those in skip, through testify's -testify.m, and returns what restores it.
// A -testify.m given on the command line is left as it is.
func selectSuiteCases(t *testing.T, skip map[string]string) (restore func()) {
	f := flag.Lookup("testify.m")
	if f == nil {
		t.Fatal("testify has no -testify.m flag: cannot leave suite cases out")
	}
	if f.Value.String() != "" || len(skip) == 0 {
		return func() {}
	}
	var run []string
	typ := reflect.TypeFor[*testsuites.DriverSuite]()
	for i := range typ.NumMethod() {
		if name := typ.Method(i).Name; strings.HasPrefix(name, "Test") && skip[name] == "" {
			run = append(run, regexp.QuoteMeta(name))
		}
	}
	for name := range skip {
		if _, ok := typ.MethodByName(name); !ok {
			t.Errorf("Distribution's driver suite has no case %s to leave out", name)
		}
	}
	if err := flag.Set("testify.m", "^("+strings.Join(run, "|")+")$"); err != nil {
		t.Fatal(err)
	}
	return func() { flag.Set("testify.m", "") }
}

// TestAnonymousReads checks that an object is private to the keys until the bucket's
// policy lets anyone read it, and that the policy lets nobody write.
func TestAnonymousReads(t *testing.T) {
	s := Start(t)
	body := []byte("hello")
	if _, err := s.Client().PutObject(&s3.PutObjectInput{
		Bucket: aws.String(s.Bucket), Key: aws.String("a/b"), Body: bytes.NewReader(body),
	}); err != nil {
		t.Fatal(err)
	}
	get := func() (int, []byte) {
		t.Helper()
		resp, err := http.Get(s.BucketURL() + "/a/b")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, b
	}
	if code, _ := get(); code != http.StatusForbidden {
		t.Errorf("anonymous GET of a private bucket: %d, want 403", code)
	}
	s.AllowAnonymousReads()
	if code, b := get(); code != http.StatusOK || !bytes.Equal(b, body) {
		t.Errorf("anonymous GET of a public bucket: %d %q, want 200 %q", code, b, body)
	}
	if n := s.AnonymousGets(); n != 1 {
		t.Errorf("versitygw logged %d anonymous GETs answered, want 1", n)
	}
	req, err := http.NewRequest(http.MethodPut, s.BucketURL()+"/a/c", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("anonymous PUT to a public bucket: %s, want 403", resp.Status)
	}
}
