package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/knadh/koanf/providers/env/v2"
)

// Environment variable names.
const (
	// EnvPrefix starts every environment variable that overrides a key.
	EnvPrefix = "PORTMUX_"
	// EnvConfig is reserved for the path of the configuration file. It is
	// not a configuration key, and Load and Parse ignore it.
	EnvConfig = "PORTMUX_CONFIG"
)

// envLayer is the environment override layer. Variables that start with
// EnvPrefix name a key: the prefix is stripped, the rest lowercased, and "__"
// separates nesting levels (PORTMUX_LOG__LEVEL sets log.level). Values are
// converted to the key's type here, so that a bad value is reported with the
// variable's name. Lists (listen, http.trusted_proxies) are comma-separated;
// booleans are read by strconv.ParseBool. An empty value is ignored, as if
// the variable were unset.
type envLayer struct {
	environ func() []string   // source of "NAME=value" pairs
	set     map[string]string // config key -> variable that set it
	found   []problem         // problems seen while reading, unsorted
}

// provider returns the koanf provider for the layer.
func (l *envLayer) provider() *env.Env {
	l.set = map[string]string{}
	return env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		TransformFunc: l.transform,
		EnvironFunc:   l.environ,
	})
}

// flush moves the problems found while reading into p, sorted by variable
// name so that the output does not depend on the order of the environment.
func (l *envLayer) flush(p *problems) {
	sort.SliceStable(l.found, func(i, j int) bool { return l.found[i].path < l.found[j].path })
	p.list = append(p.list, l.found...)
	l.found = nil
}

// transform maps one variable to a key and a typed value, or to "" to skip it.
func (l *envLayer) transform(name, value string) (string, any) {
	if name == EnvConfig || value == "" {
		return "", nil
	}
	key := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, EnvPrefix)), "__", ".")
	fail := func(format string, args ...any) (string, any) {
		l.found = append(l.found, problem{path: "env " + name, msg: fmt.Sprintf(format, args...)})
		return "", nil
	}
	typ, ok := envKeys()[key]
	if !ok {
		return fail("%s", unknownEnvKey(key))
	}
	var v any = value
	switch {
	case typ == durationType:
		d, err := time.ParseDuration(value)
		if err != nil {
			return fail("%s, got %q", durationWant, value)
		}
		v = d
	case typ.Kind() == reflect.Int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return fail("want an integer, got %q", value)
		}
		v = n
	case typ.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fail("want a number, got %q", value)
		}
		v = f
	case typ.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fail("want true or false, got %q", value)
		}
		v = b
	case typ.Kind() == reflect.Slice:
		parts := strings.Split(value, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		v = parts
	}
	if prev, dup := l.set[key]; dup {
		return fail("%q is already set by %s", key, prev)
	}
	l.set[key] = name
	return key, v
}

// unknownEnvKey explains why key cannot be set from the environment.
func unknownEnvKey(key string) string {
	t, path := configType, ""
walk:
	for part := range strings.SplitSeq(key, ".") {
		f, ok := fieldByKey(t, part)
		if !ok {
			break
		}
		path += part
		switch {
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			return fmt.Sprintf("%q cannot be set from the environment", path)
		case f.Type.Kind() != reflect.Struct:
			break walk
		case path == key:
			example := strings.ToUpper(strings.ReplaceAll(path+"."+tagOf(f.Type.Field(0)), ".", "__"))
			return fmt.Sprintf("%q is a section: set one of its keys, such as %s%s", path, EnvPrefix, example)
		}
		t, path = f.Type, path+"."
	}
	msg := fmt.Sprintf("unknown key %q", key)
	flat := strings.ReplaceAll(key, ".", "_")
	for known := range envKeys() {
		if strings.Contains(known, ".") && strings.ReplaceAll(known, ".", "_") == flat {
			msg += fmt.Sprintf(` (use "__" between levels: %s%s)`,
				EnvPrefix, strings.ToUpper(strings.ReplaceAll(known, ".", "__")))
		}
	}
	return msg
}

// envKeys returns the keys that the environment may set, with their types:
// every scalar or list of scalars in Config and its nested sections. Lists of
// sections (routes) are left out.
func envKeys() map[string]reflect.Type {
	keys := map[string]reflect.Type{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			name := prefix + tagOf(f)
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(name+".", f.Type)
			case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			default:
				keys[name] = f.Type
			}
		}
	}
	walk("", configType)
	return keys
}

// fieldByKey returns the field of struct type t whose koanf tag is key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if tagOf(t.Field(i)) == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// tagOf returns the koanf key name of a field.
func tagOf(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("koanf"), ",")
	return name
}
