package config

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// allowedDeps are the only non-standard imports of package config: it is a
// leaf that turns koanf input into a Config (style guide, section 1).
var allowedDeps = map[string]bool{
	"github.com/go-viper/mapstructure/v2":      true,
	"github.com/knadh/koanf/v2":                true,
	"github.com/knadh/koanf/parsers/yaml":      true,
	"github.com/knadh/koanf/providers/confmap": true,
	"github.com/knadh/koanf/providers/env/v2":  true,
	"github.com/knadh/koanf/providers/file":    true,
}

func TestDeps(t *testing.T) {
	t.Parallel()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") && !allowedDeps[path] {
				t.Errorf("%s imports %q; config may import only the standard library, koanf and mapstructure", name, path)
			}
		}
	}
}
