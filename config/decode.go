package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
)

var (
	durationType = reflect.TypeOf(time.Duration(0))
	configType   = reflect.TypeOf(Config{})
)

// durationWant starts the message for a value that is not a duration.
const durationWant = `want a duration such as "1s" or "500ms"`

// decode unmarshals raw, the merged layers with section defaults filled in,
// into a new Config, strictly: unknown keys, keys in the wrong case and
// values of the wrong type are recorded in p.
func decode(raw map[string]any, p *problems) *Config {
	var c Config
	d, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.TextUnmarshallerHookFunc(),
			strictHook,
		),
		ErrorUnused:      true,
		WeaklyTypedInput: false,
		// The default matches keys case-insensitively; "Listen" must be
		// reported, not accepted.
		MatchName: func(key, field string) bool { return key == field },
		TagName:   "koanf",
		Result:    &c,
	})
	if err == nil {
		err = d.Decode(raw)
	}
	if err != nil {
		translate(err, p)
	}
	return &c
}

// strictHook accepts only values of the expected shape and converts the few
// that need it. Its errors become "config: <path>: <message>" lines.
//
// Durations must be strings that time.ParseDuration accepts: plain numbers
// such as 3 are refused, because mapstructure would read them as
// nanoseconds. A single string is accepted where a list of strings is
// expected (listen: ":443").
func strictHook(from, to reflect.Type, data any) (any, error) {
	if from == to {
		return data, nil
	}
	switch {
	case to == durationType:
		s, ok := data.(string)
		if !ok {
			return nil, fmt.Errorf("%s, got %s", durationWant, describe(data))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("%s, got %q", durationWant, s)
		}
		return d, nil
	case to.Kind() == reflect.Pointer:
		// mapstructure calls the hook again for the element type.
		return data, nil
	case to.Kind() == reflect.String:
		if from.Kind() != reflect.String {
			return nil, fmt.Errorf("want a string, got %s", describe(data))
		}
	case to.Kind() == reflect.Int, to.Kind() == reflect.Int64:
		return toInt(data, to)
	case to.Kind() == reflect.Bool:
		if from.Kind() != reflect.Bool {
			return nil, fmt.Errorf("want true or false, got %s", describe(data))
		}
	case to.Kind() == reflect.Slice:
		if from.Kind() == reflect.String && to.Elem().Kind() == reflect.String {
			return []string{reflect.ValueOf(data).String()}, nil
		}
		if from.Kind() != reflect.Slice {
			return nil, fmt.Errorf("want a list, got %s", describe(data))
		}
	case to.Kind() == reflect.Struct:
		if from.Kind() != reflect.Map {
			return nil, fmt.Errorf("want a mapping of keys, got %s", describe(data))
		}
	}
	return data, nil
}

// toInt returns data as a value of type to (int or int64) if it is a whole
// number that fits. mapstructure itself would truncate 1.5 to 1.
func toInt(data any, to reflect.Type) (any, error) {
	lo, hi := int64(math.MinInt), int64(math.MaxInt)
	if to.Kind() == reflect.Int64 {
		lo, hi = math.MinInt64, math.MaxInt64
	}
	v := reflect.ValueOf(data)
	n, ok := int64(0), false
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok = v.Int(), v.Int() >= lo && v.Int() <= hi
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok = int64(v.Uint()), v.Uint() <= uint64(hi)
	}
	if !ok {
		return nil, fmt.Errorf("want an integer, got %s", describe(data))
	}
	return reflect.ValueOf(n).Convert(to).Interface(), nil
}

// describe renders a decoded YAML value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("%q", x)
	case bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x)
	case float32, float64:
		return fmt.Sprint(x)
	case time.Duration:
		return x.String()
	case time.Time:
		return "a timestamp (quote it to make it a string)"
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	}
	return fmt.Sprintf("a value of type %T", v)
}

// translate turns mapstructure's errors into problems. mapstructure joins the
// errors of every field (errors.Join) and names each with a
// *mapstructure.DecodeError whose name is the YAML path, such as
// "routes[1].match".
func translate(err error, p *problems) {
	var de *mapstructure.DecodeError
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		for _, sub := range e.Unwrap() {
			translate(sub, p)
		}
		return
	case *mapstructure.DecodeError:
		de = e
	default:
		if inner := errors.Unwrap(err); inner != nil {
			translate(inner, p)
			return
		}
		p.addDecode("", err.Error())
		return
	}

	path := de.Name()
	if path == configType.String() {
		path = "" // mapstructure names the root by its type
	}
	inner := de.Unwrap()
	if joined, ok := inner.(interface{ Unwrap() []error }); ok {
		for _, sub := range joined.Unwrap() {
			translate(sub, p)
		}
		return
	}
	msg := inner.Error()
	if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
		for _, key := range strings.Split(keys, ", ") {
			p.add(path, "unknown key %q", key)
		}
		return
	}
	var ute *mapstructure.UnconvertibleTypeError
	if errors.As(inner, &ute) {
		msg = fmt.Sprintf("want %s, got %s", ute.Expected.Type(), describe(ute.Value))
	}
	p.addDecode(path, msg)
}
