package config

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// A Note is about a key that Disco accepts but does not use as it is written, such as the
// port of http.addr. Disco logs them at start; disco config check prints them.
type Note struct {
	Key  string
	Line int
	Text string
}

func (n Note) String() string { return fmt.Sprintf("%s (line %d): %s", n.Key, n.Line, n.Text) }

// notes lists the keys of the file's top mapping doc that c accepts but does not use.
func notes(doc *yaml.Node, c *Config) []Note {
	var out []Note
	note := func(path, text string) {
		if k := keyNode(doc, path); k != nil {
			out = append(out, Note{Key: path, Line: k.Line, Text: text})
		}
	}
	if c.Net != "unix" {
		if _, port, err := net.SplitHostPort(c.Registry.HTTP.Addr); err == nil && port != "" {
			_, listen, _ := net.SplitHostPort(c.Addr)
			note("http.addr", fmt.Sprintf("only the host is used: the registry listens on port %s "+
				"($DISCO_PORT, default %d), not %s", listen, DefaultPort, port))
		}
	}
	note("log.hooks", "ignored: Disco sends its logs to stderr only, no mail")
	note("proxy.cachewritetimeout", "ignored: a mirror gives up a blob from the upstream once it sends nothing for disco.upstreamtimeout")
	if c.IPFS.Redirect == "" {
		note("storage.redirect", "ignored: Disco redirects to its secondary cache only, with storage.ipfs.redirect")
	}
	return out
}

// keyNode returns the key node of a dotted path such as "http.addr" in the mapping m, or
// nil when m does not have it.
func keyNode(m *yaml.Node, path string) *yaml.Node {
	var key *yaml.Node
	for elem := range strings.SplitSeq(path, ".") {
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		var val *yaml.Node
		key = nil
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == elem {
				key, val = m.Content[i], m.Content[i+1]
			}
		}
		if key == nil {
			return nil
		}
		m = val
	}
	return key
}

// withTabHint adds to a YAML syntax error the first line indented with a tab, which YAML
// does not allow; a config copied from the original Disco's README has such lines.
func withTabHint(data []byte, err error) error {
	for i, line := range bytes.Split(data, []byte("\n")) {
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 {
			return fmt.Errorf("%w (line %d is indented with a tab: YAML indents with spaces only, "+
				"comment lines included)", err, i+1)
		}
	}
	return err
}

// Errors returns the errors err joins, one for each problem Parse found; err itself when
// it joins none.
func Errors(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, Errors(e)...)
	}
	return out
}
