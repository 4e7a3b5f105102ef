package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/discoregistry/disco/internal/kubotest"
)

// A block is a fenced code block of a Markdown file. Its info string says how it is
// checked:
//
//	```sh run              run by TestDocs, against a Disco on localhost:1970
//	```sh test=TestX,TestY  run by the tests named, which must exist
//	```sh ci               run by CI: each command is in .ci/run or scripts/test
//	```yaml                a configuration disco config check accepts
//	```yaml invalid        a configuration disco config check refuses
//
// A sh block with neither run nor test= fails TestDocs; other languages (text, json,
// ini, ...) are shown, not run.
type block struct {
	file string
	line int // of the opening fence
	lang string
	info []string // the words after the language
	text string
}

// docFiles are the files TestDocs checks.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	return append(files, "../README.md")
}

func readBlocks(t *testing.T, file string) []block {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []block
	var cur *block
	var text strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			words := strings.Fields(strings.TrimPrefix(line, "```"))
			cur = &block{file: file, line: n}
			if len(words) > 0 {
				cur.lang, cur.info = words[0], words[1:]
			}
			text.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.text = text.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			text.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Errorf("%s:%d: a code block that is never closed", file, cur.line)
	}
	return blocks
}

func (b block) has(word string) bool {
	for _, w := range b.info {
		if w == word {
			return true
		}
	}
	return false
}

func (b block) tests() []string {
	for _, w := range b.info {
		if names, ok := strings.CutPrefix(w, "test="); ok {
			return strings.Split(names, ",")
		}
	}
	return nil
}

// TestDocs keeps the documentation honest: it runs the commands of docs/*.md and
// README.md, checks that the tests named for the others exist, and checks every
// configuration example with disco config check.
//
// The sh run blocks of a file run in order, as one bash script with -euo pipefail, in an
// empty directory, with HOME and the environment of a Disco started on its built-in
// defaults (localhost:1970, which TestNoConfig needs too: neither test is parallel), the
// disco under test first in PATH and docker talking to the test dockerd. That dockerd
// cannot reach any registry, so TestDocs first imports a small image as busybox, the image
// the examples push.
func TestDocs(t *testing.T) {
	tests := testNames(t)
	var ci []byte
	for _, f := range []string{"../.ci/run", "../scripts/test"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ci = append(ci, b...)
	}
	var runs = map[string][]block{}
	var files []string
	for _, file := range docFiles(t) {
		files = append(files, file)
		for _, b := range readBlocks(t, file) {
			at := fmt.Sprintf("%s:%d", b.file, b.line)
			switch b.lang {
			case "sh", "bash", "shell", "console":
				names := b.tests()
				switch {
				case b.has("run"):
					runs[file] = append(runs[file], b)
				case b.has("ci"):
					for line := range strings.Lines(b.text) {
						cmd, _, _ := strings.Cut(line, "#")
						if cmd = strings.TrimSpace(cmd); cmd != "" && !bytes.Contains(ci, []byte(cmd)) {
							t.Errorf("%s: %q is marked as run by CI, but neither .ci/run nor scripts/test runs it", at, cmd)
						}
					}
				case len(names) > 0:
					for _, name := range names {
						if !tests[name] {
							t.Errorf("%s: the block names %s, which is no test of this repository", at, name)
						}
					}
				default:
					t.Errorf("%s: a %s block must say how it is tested: ```%s run, ```%s test=TestName or ```%s ci", at, b.lang, b.lang, b.lang, b.lang)
				}
			case "yaml", "yml":
				checkDocConfig(t, at, b)
			}
		}
	}
	for _, file := range files {
		if len(runs[file]) == 0 {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) { runDocBlocks(t, runs[file]) })
	}
}

// testNames returns the names of the test functions in the repository's _test.go files.
func testNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	re := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != ".." {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			names[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// checkDocConfig runs disco config check on a yaml block.
func checkDocConfig(t *testing.T, at string, b block) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte(b.text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(discoBin(), "config", "check", file)
	cmd.Env = append(kubotest.CleanEnv("HOME", "REGISTRY_", "DISCO_"), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	switch invalid := b.has("invalid"); {
	case invalid && err == nil:
		t.Errorf("%s: the example is marked invalid, but disco config check accepts it:\n%s", at, out)
	case !invalid && err != nil:
		t.Errorf("%s: disco config check refuses the example (mark it ```yaml invalid if it shows a mistake):\n%s", at, out)
	}
}

// runDocBlocks runs the sh run blocks of one file against a Disco of their own.
func runDocBlocks(t *testing.T, blocks []block) {
	dk := needDocker(t)
	if _, err := dk.try("image", "inspect", "busybox"); err != nil {
		dk.importRandom(t, "busybox:latest", 1<<20)
	}
	d := startDisco(t, discoOptions{NoConfig: true})
	var script bytes.Buffer
	script.WriteString("set -euo pipefail\n")
	for _, b := range blocks {
		fmt.Fprintf(&script, "echo '>>> %s:%d' >&2\n%s", b.file, b.line, b.text)
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = t.TempDir()
	cmd.Env = append(slices.Clone(d.env), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, kv := range dk.env {
		if strings.HasPrefix(kv, "DOCKER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the commands of %s failed (%v):\n%s", blocks[0].file, err, out)
	}
	t.Logf("the commands of %s:\n%s", blocks[0].file, out)
}
