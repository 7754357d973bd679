package test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// opsWatchConfig is a config with one echo route named route; valid false makes
// it invalid (a bad duration).
func opsWatchConfig(admin, route string, valid bool) string {
	idle := "1h"
	if !valid {
		idle = "forever"
	}
	return fmt.Sprintf(`listen: ["127.0.0.1:0"]
sniff_timeout: 10s   # no silent clients here: only a guard
admin: {listen: %q}
idle_timeout: %s
log: {level: info, format: json}
routes:
  - name: %s
    match: {protocol: unknown}
    to: builtin:echo
`, admin, idle, route)
}

// TestE2EOpsWatch: with --watch, changing the config file reloads it without a
// signal: a file replaced by rename (also at once after startup), a file
// rewritten in place, an invalid file (refused, the running config stays), and a
// Kubernetes ConfigMap style mount whose file changes by a symlink swap in its
// directory.
func TestE2EOpsWatch(t *testing.T) {
	noSignal := func() {}          // the watcher must notice by itself
	const guard = 30 * time.Second // the file is polled every 2s: a hang guard

	t.Run("file", func(t *testing.T) {
		admin := closedPort(t)
		first := opsWatchConfig(admin, "first", true)
		pm := startOpsPM(t, first, "--watch")
		if got, want := pm.Metrics(t).Series("portmux_config_info"), opsKey("portmux_config_info", "hash", opsHash(first))+" 1"; got != want {
			t.Fatalf("portmux_config_info at start: %q; want %q", got, want)
		}

		// An edit as soon as portmux is up (listening, admin ready) must not
		// be missed. If it is, go on with another edit to check the rest.
		early := opsWatchConfig(admin, "early", true)
		opsWriteFile(t, pm.cfgPath, early)
		if _, err := pm.waitFor(opsIsReloaded(opsHash(early)), guard); err != nil {
			t.Errorf("file replaced right after portmux was ready: no reload within %v (%v); portmux goes on "+
				"with %q while the file says %q. (cmd/portmux/run.go: watchFile reads the file it compares "+
				"against only when its goroutine starts, after the listeners are up, so an edit in between "+
				"is never noticed.)", guard, err, opsHash(first), opsHash(early))
		}

		pm.Reload(t, opsWatchConfig(admin, "second", true), true, noSignal)
		if got, want := pm.Routes(t), []string{"second unknown -> builtin:echo"}; !slices.Equal(got, want) {
			t.Errorf("GET /routes after the file was replaced: %q; want %q", got, want)
		}

		pm.Reload(t, opsWatchConfig(admin, "third", false), false, noSignal)
		if got, want := pm.Routes(t), []string{"second unknown -> builtin:echo"}; !slices.Equal(got, want) {
			t.Errorf("GET /routes after an invalid file: %q; want %q (unchanged)", got, want)
		}

		// In place, as `cat > file` or an editor that keeps the inode does.
		cfg := opsWatchConfig(admin, "fourth", true)
		n := pm.Count(opsIsReloaded(opsHash(cfg))) + 1
		if err := os.WriteFile(pm.cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		pm.WaitNth(t, opsIsReloaded(opsHash(cfg)), n, guard)
		if got, want := pm.Routes(t), []string{"fourth unknown -> builtin:echo"}; !slices.Equal(got, want) {
			t.Errorf("GET /routes after the file was rewritten in place: %q; want %q", got, want)
		}
		sent, got, _, err := roundTrip(pm.Addr(), []byte("{watch}\n"), 1, 4096, time.Minute)
		if err != nil || got != sent {
			t.Errorf("echo after the reloads: %+v, %v; want %+v", got, err, sent)
		}
		if n := pm.Count(func(l logLine) bool { return l.Msg() == "SIGHUP: reloading config" }); n != 0 {
			t.Errorf("%d SIGHUP lines; want 0 (no signal was sent)", n)
		}
		m := pm.Metrics(t)
		if ok, failed := m.Get("portmux_reloads_total", "result", "ok"), m.Get("portmux_reloads_total", "result", "failed"); ok < 2 || failed < 1 {
			t.Errorf("portmux_reloads_total: ok %g, failed %g; want at least 2 and 1", ok, failed)
		}
	})

	t.Run("configmap symlink swap", func(t *testing.T) {
		// The layout kubelet writes: portmux.yaml -> ..data/portmux.yaml,
		// ..data -> ..v1; an update writes ..v2 and renames a new ..data
		// link over the old one.
		dir, admin := t.TempDir(), closedPort(t)
		version := func(name, route string) {
			t.Helper()
			if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name, "portmux.yaml"), []byte(opsWatchConfig(admin, route, true)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
				t.Fatal(err)
			}
		}
		version("..v1", "before")
		path := filepath.Join(dir, "portmux.yaml")
		if err := os.Symlink(filepath.Join("..data", "portmux.yaml"), path); err != nil {
			t.Fatal(err)
		}
		pm := startOpsPMFile(t, path, "--watch")
		// First make sure the watcher has read the file (an edit right
		// after startup can be missed: see the "file" subtest).
		for i := 0; ; i++ {
			warm := opsWatchConfig(admin, fmt.Sprintf("warm%d", i), true)
			if err := os.WriteFile(path, []byte(warm), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := pm.waitFor(opsIsReloaded(opsHash(warm)), guard); err == nil {
				break
			} else if i == 2 {
				t.Fatalf("3 edits of the file, none reloaded: %v\n%s", err, pm.dump())
			}
		}

		match := opsIsReloaded(opsHash(opsWatchConfig(admin, "after", true)))
		version("..v2", "after")
		pm.WaitNth(t, match, 1, guard)
		if got, want := pm.Routes(t), []string{"after unknown -> builtin:echo"}; !slices.Equal(got, want) {
			t.Errorf("GET /routes after the ConfigMap update: %q; want %q", got, want)
		}
	})
}
