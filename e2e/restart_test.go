package e2e

import "testing"

// TestRestart stops Disco after a push, cleanly and by SIGKILL the moment the push was
// acknowledged, and starts it again: Disco persists every write before answering it, so
// the image must be there either way.
func TestRestart(t *testing.T) {
	for _, tt := range []struct {
		name string
		stop func(*Disco)
	}{
		{"sigterm", (*Disco).Stop},
		{"sigkill", (*Disco).Kill},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDisco(t, discoOptions{})
			img := randomImage(t, 2<<20, 3)
			digest := pushImage(t, d, "e2e/restart", "v1", img)

			tt.stop(d)
			d.Restart()
			checkImage(t, d, "e2e/restart:v1", img)
			checkImage(t, d, "e2e/restart@"+digest.String(), img)
		})
	}
}
