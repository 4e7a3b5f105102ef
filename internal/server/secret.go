package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// secretFile holds, in the uploads directory, the secret Disco signs upload state with
// when http.secret is not set.
const secretFile = "http-secret"

// uploadSecret returns the secret kept in dir, creating it on first use. Distribution signs
// the state of an upload, which travels in its location, with http.secret, and makes up a
// new secret at every start when none is set: uploads in progress would then not survive
// a restart, though their data does.
func uploadSecret(dir string) (string, error) {
	name := filepath.Join(dir, secretFile)
	b, err := os.ReadFile(name)
	if err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("upload secret: %w", err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	s := hex.EncodeToString(secret)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("upload secret: %w", err)
	}
	tmp := name + ".new"
	if err := os.WriteFile(tmp, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("upload secret: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return "", fmt.Errorf("upload secret: %w", err)
	}
	return s, nil
}
