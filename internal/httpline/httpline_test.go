package httpline

import "testing"

func TestEmptyLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"\r\nGET", 2}, {"\nGET", 1}, {"\r\n", 2}, {"\n", 1},
		{"", 0}, {"\r", 0}, {"\rGET", 0}, {"GET", 0}, {" \r\n", 0},
	} {
		if got := EmptyLine([]byte(tc.in)); got != tc.want {
			t.Errorf("EmptyLine(%q) = %d; want %d", tc.in, got, tc.want)
		}
	}
}
