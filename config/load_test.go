package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/knadh/koanf/providers/file"
)

func TestLoad(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	write := func(name, doc string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("valid", func(t *testing.T) {
		c, err := Load(write("ok.yaml", minimal))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.Routes[0].Name, "echo"; got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	})

	t.Run("yaml syntax error names the file", func(t *testing.T) {
		path := write("bad.yaml", "listen: [':443']\nlog:\n  level: debug\n format: json\n")
		_, err := Load(path)
		got := problemsOf(t, err)
		want := []string{"config: " + path + ": yaml: line 3: did not find expected key"}
		if !slices.Equal(got, want) {
			t.Errorf("got %q; want %q", got, want)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "nope.yaml")
		_, err := Load(path)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v; want fs.ErrNotExist", err)
		}
		var cerr *Error
		if errors.As(err, &cerr) {
			t.Errorf("got *Error %v; want an I/O error", err)
		}
		if got, want := err.Error(), "config: open "+path+": no such file or directory"; got != want {
			t.Errorf("got %q; want %q", got, want)
		}
	})

	t.Run("directory", func(t *testing.T) {
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("got %v; want an error naming %q", err, dir)
		}
	})

	t.Run("problems with a file", func(t *testing.T) {
		path := write("typo.yaml", withRoutes("", "{name: r, match: {protocol: any}, backnd: 'x:1'}"))
		_, err := load(file.Provider(path), path, noEnv)
		got := problemsOf(t, err)
		want := []string{`config: routes[0]: unknown key "backnd"`, `config: routes[0].to: missing target (set to or upstreams)`}
		if !slices.Equal(got, want) {
			t.Errorf("got %q; want %q", got, want)
		}
	})
}
