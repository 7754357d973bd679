package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// Load reads the YAML file at path and returns the configuration it
// describes: defaults, then the file, then environment overrides (see
// EnvPrefix), decoded strictly and validated.
//
// If the file cannot be read, the error wraps the *fs.PathError, so
// errors.Is(err, fs.ErrNotExist) reports a missing file. If the file was read
// but is not a valid configuration, the error is an *Error listing every
// problem; YAML syntax errors are reported as "config: <path>: yaml: ...".
func Load(path string) (*Config, error) {
	if path == "" {
		return nil, errors.New("config: no file path given")
	}
	return load(file.Provider(path), path, os.Environ)
}

// Parse is like Load but reads the YAML document from b. Environment
// overrides apply. YAML syntax errors are reported as "config: yaml: ...".
func Parse(b []byte) (*Config, error) {
	return load(bytesProvider(b), "", os.Environ)
}

// load builds a configuration from the defaults, the YAML document from src
// (named name in messages) and the variables returned by environ.
func load(src koanf.Provider, name string, environ func() []string) (*Config, error) {
	k := koanf.New(".")
	var p problems
	if err := k.Load(confmap.Provider(defaults(), ""), nil); err != nil {
		return nil, fmt.Errorf("config: defaults: %w", err)
	}
	yamlOK := true
	if err := k.Load(src, yamlParser{}); err != nil {
		var ye *yamlError
		if !errors.As(err, &ye) {
			return nil, fmt.Errorf("config: %w", err)
		}
		yamlOK = false
		for _, line := range ye.lines() {
			p.add(name, "%s", line)
		}
	}
	// The environment is read even after a YAML error, so that its
	// problems are reported in the same run.
	el := &envLayer{environ: environ}
	if err := k.Load(el.provider(), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	el.flush(&p)
	if !yamlOK {
		return nil, p.err(nil)
	}

	raw := k.Raw()
	sectionDefaults(raw)
	c := decode(raw, &p)
	c.normalize()
	c.validate(&p)
	if err := p.err(el.set); err != nil {
		return nil, err
	}
	return c, nil
}

// bytesProvider is a koanf.Provider of an in-memory document.
type bytesProvider []byte

// ReadBytes returns the document.
func (b bytesProvider) ReadBytes() ([]byte, error) { return b, nil }

// Read is not supported: the document needs a parser.
func (b bytesProvider) Read() (map[string]any, error) {
	return nil, errors.New("bytes provider does not support Read")
}

// yamlParser wraps the koanf YAML parser. It tags syntax errors so that load
// can tell them from I/O errors, and it cleans the parsed tree (see clean).
type yamlParser struct{}

// Unmarshal parses b.
func (yamlParser) Unmarshal(b []byte) (map[string]any, error) {
	mp, err := yaml.Parser().Unmarshal(b)
	if err != nil {
		return nil, &yamlError{err: err}
	}
	out, _ := clean(mp).(map[string]any)
	return out, nil
}

// Marshal encodes o as YAML.
func (yamlParser) Marshal(o map[string]any) ([]byte, error) {
	return yaml.Parser().Marshal(o)
}

// clean returns a copy of a parsed YAML value in which every mapping has
// string keys and keys whose value is null are removed. A null value then
// means "not set" and keeps the default (an empty "log:" section, or
// "idle_timeout:" with no value) instead of becoming a zero that would, for
// instance, silently disable a timeout.
func clean(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if val != nil {
				out[k] = clean(val)
			}
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if val != nil {
				out[fmt.Sprint(k)] = clean(val)
			}
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = clean(val)
		}
		return out
	}
	return v
}

// yamlError is a YAML document that could not be parsed.
type yamlError struct{ err error }

// Error returns the parser's message.
func (e *yamlError) Error() string { return e.err.Error() }

// Unwrap returns the parser's error.
func (e *yamlError) Unwrap() error { return e.err }

// lines splits the parser's message into one line per problem, each starting
// with "yaml: ", such as "yaml: line 3: could not find expected ':'".
func (e *yamlError) lines() []string {
	msg := e.err.Error()
	head, rest, multi := strings.Cut(msg, "\n")
	if !multi {
		return []string{msg}
	}
	// "yaml: unmarshal errors:\n  line 1: ...\n  line 4: ..."
	var out []string
	for _, l := range strings.Split(rest, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.Contains(l, "cannot unmarshal !!") && strings.HasSuffix(l, "into map[string]interface {}") {
			l = strings.TrimSuffix(l, " into map[string]interface {}")
			l = strings.Replace(l, "cannot unmarshal", "the document must be a mapping of keys, not", 1)
		}
		out = append(out, "yaml: "+l)
	}
	if len(out) == 0 {
		return []string{strings.ReplaceAll(head, "\n", " ")}
	}
	return out
}
