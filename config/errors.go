package config

import (
	"fmt"
	"strings"
)

// Error reports every problem found in a configuration. Load, Parse and
// Validate return it (as an error) when the input was read but is not a valid
// configuration; I/O failures such as a missing file are returned as other
// errors.
type Error struct {
	// Problems holds one line per problem, each of the form
	// "config: <path>: <message>", where <path> uses YAML key names and
	// 0-based list indices, such as "routes[2].match.sni[0]".
	Problems []string
}

// Error returns the problems joined by newlines.
func (e *Error) Error() string {
	return strings.Join(e.Problems, "\n")
}

// problem is one finding before formatting.
type problem struct {
	path string // YAML path such as "routes[0].to"; "" for the top level
	msg  string
	// decode is set for values that could not be decoded. Validation
	// findings at or below such a path are dropped: they would only repeat
	// the decode problem about a zero value.
	decode bool
}

// problems collects findings in order.
type problems struct {
	list []problem
}

// add records a validation problem at path.
func (p *problems) add(path, format string, args ...any) {
	p.list = append(p.list, problem{path: path, msg: fmt.Sprintf(format, args...)})
}

// addDecode records a decoding problem at path.
func (p *problems) addDecode(path, msg string) {
	p.list = append(p.list, problem{path: path, msg: msg, decode: true})
}

// err returns the collected problems as an *Error, or nil if there are none.
// envVars maps config keys set from the environment to their variable names,
// so that a problem with such a value also names its source.
func (p *problems) err(envVars map[string]string) error {
	if len(p.list) == 0 {
		return nil
	}
	var out []string
	for _, q := range p.list {
		if !q.decode && p.shadowed(q.path) {
			continue
		}
		line := "config: " + q.msg
		if q.path != "" {
			line = "config: " + q.path + ": " + q.msg
		}
		if v := envSource(envVars, q.path); v != "" {
			line += " (set by " + v + ")"
		}
		out = append(out, line)
	}
	return &Error{Problems: out}
}

// shadowed reports whether a decode problem was recorded at path or at one of
// its parents.
func (p *problems) shadowed(path string) bool {
	for _, q := range p.list {
		if q.decode && q.path != "" && under(path, q.path) {
			return true
		}
	}
	return false
}

// envSource returns the environment variable that set path or one of its
// parents, or "".
func envSource(envVars map[string]string, path string) string {
	for key, name := range envVars {
		if under(path, key) {
			return name
		}
	}
	return ""
}

// under reports whether path equals parent or lies below it.
func under(path, parent string) bool {
	if !strings.HasPrefix(path, parent) {
		return false
	}
	rest := path[len(parent):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}
