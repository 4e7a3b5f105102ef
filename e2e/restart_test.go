package e2e

import "testing"

func TestRestart(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 2<<20, 3)
	digest := pushImage(t, d, "e2e/restart", "v1", img)

	d.Stop()
	d.Restart()
	checkImage(t, d, "e2e/restart:v1", img)
	checkImage(t, d, "e2e/restart@"+digest.String(), img)
}

// TestKilledAfterPush kills Disco the moment it has acknowledged a push: Disco persists
// every write before answering it, so the image must survive.
func TestKilledAfterPush(t *testing.T) {
	t.Parallel()
	d := startDisco(t, discoOptions{})
	img := randomImage(t, 2<<20, 3)
	digest := pushImage(t, d, "e2e/killed", "v1", img)

	d.Kill()
	d.Restart()
	checkImage(t, d, "e2e/killed:v1", img)
	checkImage(t, d, "e2e/killed@"+digest.String(), img)
}
