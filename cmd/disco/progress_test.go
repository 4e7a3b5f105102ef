package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"
)

func TestProgressOnTerminal(t *testing.T) {
	var b bytes.Buffer
	p := newProgressOn(&b)
	p.Show("removing %d blocks", 3)
	p.Done()
	p.Done()
	if got := b.String(); !strings.HasPrefix(got, "\r\033[Kremoving 3 blocks (0s)") || !strings.HasSuffix(got, "\r\033[K") {
		t.Errorf("progress wrote %q, want the line, then the line cleared", got)
	}
}

func TestProgressQuietOffTerminal(t *testing.T) {
	f, err := os.Create(t.TempDir() + "/log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	for _, w := range []io.Writer{f, &buf} {
		p := newProgress(w)
		p.Show("working")
		p.Done()
	}
	if buf.Len() > 0 {
		t.Errorf("progress wrote %q to a buffer, which is no terminal", &buf)
	}
	if st, _ := f.Stat(); st.Size() != 0 {
		t.Errorf("progress wrote %d bytes to a file, which is no terminal", st.Size())
	}
}
