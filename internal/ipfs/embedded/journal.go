package embedded

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// A journal makes MFS changes durable without flushing MFS for each of them.
//
// Flushing MFS writes every changed directory up to the root, and a registry's
// directories are large (a repository's tags, the list of repositories): doing that for
// every request costs more than the request. Instead, each change is recorded here as the
// path it sets and what it sets it to, and Flush writes the records to the journal file.
// Now and then a checkpoint flushes MFS, records its root in the repository and empties the
// journal. On start, the records in the journal are applied again to the last recorded
// root.
//
// Records are idempotent and each sets a path absolutely (to a CID, or to nothing), so
// applying the whole journal again to a root that already holds some or all of it (a
// crash between recording the root and emptying the journal) gives the same tree.
type journal struct {
	f   *os.File
	buf bytes.Buffer // records not written yet
	len int64        // bytes in the file
}

// A record is one change: Path set to the DAG CID, or removed when CID is empty.
type record struct {
	Path string `json:"path"`
	CID  string `json:"cid,omitempty"`
}

// openJournal opens the journal at name, creating it if need be, and returns the records
// it holds. A record cut short at the end, by a crash while it was written, is dropped.
func openJournal(name string) (*journal, []record, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open mfs journal: %w", err)
	}
	recs, n, err := readRecords(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read mfs journal %s: %w", name, err)
	}
	return &journal{f: f, len: n}, recs, nil
}

// readRecords reads whole lines of records and returns them with the bytes they take.
func readRecords(r io.Reader) ([]record, int64, error) {
	var recs []record
	var n int64
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return recs, n, nil // a line without its newline is cut short
		}
		if err != nil {
			return nil, 0, err
		}
		var rec record
		if err := json.Unmarshal(line, &rec); err != nil || rec.Path == "" {
			return nil, 0, fmt.Errorf("record at byte %d: %q", n, bytes.TrimSpace(line))
		}
		recs = append(recs, rec)
		n += int64(len(line))
	}
}

// add records a change, to be written by the next write.
func (j *journal) add(rec record) {
	b, _ := json.Marshal(rec) // strings only: cannot fail
	j.buf.Write(b)
	j.buf.WriteByte('\n')
}

// write appends the records added since the last write to the file.
func (j *journal) write() error {
	if j.buf.Len() == 0 {
		return nil
	}
	if _, err := j.f.Write(j.buf.Bytes()); err != nil {
		// Cut off what was written, so that the file ends with a whole record; the
		// records stay here for the next write or checkpoint.
		err = fmt.Errorf("write mfs journal: %w", err)
		if terr := j.f.Truncate(j.len); terr != nil {
			err = errors.Join(err, fmt.Errorf("cut mfs journal: %w", terr))
		}
		return err
	}
	j.len += int64(j.buf.Len())
	j.buf.Reset()
	return nil
}

// dropFirst drops the first n bytes of the file, records a checkpoint's root holds, and
// keeps those after them: written to a new file that replaces the journal, so that a
// crash leaves one or the other whole. The records kept may have been acknowledged: the
// new file is on disk before it replaces the old one.
func (j *journal) dropFirst(n int64) error {
	if n >= j.len {
		if err := j.f.Truncate(0); err != nil {
			return fmt.Errorf("empty mfs journal: %w", err)
		}
		j.len = 0
		return nil
	}
	tail := make([]byte, j.len-n)
	if _, err := j.f.ReadAt(tail, n); err != nil {
		return fmt.Errorf("read mfs journal: %w", err)
	}
	name := j.f.Name()
	if err := writeSynced(name+".new", tail); err != nil {
		return fmt.Errorf("cut mfs journal: %w", err)
	}
	if err := os.Rename(name+".new", name); err != nil {
		return fmt.Errorf("cut mfs journal: %w", err)
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open mfs journal: %w", err)
	}
	j.f.Close() // the old file, renamed over
	j.f, j.len = f, int64(len(tail))
	return nil
}

// writeSynced writes b to the file name and syncs it.
func writeSynced(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// reset empties the journal, once what it recorded is in the root.
func (j *journal) reset() error {
	j.buf.Reset()
	j.len = 0
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("empty mfs journal: %w", err)
	}
	return nil
}

// cut cuts off what follows the whole records in the file: a record a crash cut short.
func (j *journal) cut() error {
	if err := j.f.Truncate(j.len); err != nil {
		return fmt.Errorf("cut mfs journal: %w", err)
	}
	return nil
}

func (j *journal) Close() error { return j.f.Close() }
