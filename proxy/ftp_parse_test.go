package proxy

import (
	"net/netip"
	"testing"
)

func TestFTPParseCommand(t *testing.T) {
	tests := []struct {
		line, verb, arg string
	}{
		{"PASV\r\n", "PASV", ""},
		{"epsv ALL\r\n", "EPSV", "ALL"},
		{"PORT 127,0,0,1,4,1\r\n", "PORT", "127,0,0,1,4,1"},
		{"AUTH TLS\n", "AUTH", "TLS"},
		{"\xff\xf4\xff\xf2ABOR\r\n", "ABOR", ""}, // Telnet IP, DM
		{"\xff\xfb\x01PORT 1,2,3,4,5,6\r\n", "PORT", "1,2,3,4,5,6"},
		{"  STOR  a b  \r\n", "STOR", "a b"},
		{"\r\n", "", ""},
	}
	for _, tt := range tests {
		verb, arg := parseCommand([]byte(tt.line))
		if verb != tt.verb || arg != tt.arg {
			t.Errorf("parseCommand(%q) = %q, %q; want %q, %q", tt.line, verb, arg, tt.verb, tt.arg)
		}
	}
}

func TestFTPParsePassiveReplies(t *testing.T) {
	tests := []struct {
		name  string
		code  int
		reply string
		port  uint16 // 0: an error is expected
	}{
		{"227 RFC 959", 227, "227 Entering Passive Mode (192,168,1,2,4,1)\r\n", 1025},
		{"227 no parentheses", 227, "227 Entering Passive Mode 10,0,0,1,255,255\r\n", 65535},
		{"227 prose first", 227, "227 =1,2,3,4,0,21", 21},
		{"227 multi-line", 227, "227-Here\r\n227 comes (1,2,3,4,0,22)\r\n", 22},
		{"227 skips bad numbers", 227, "227 v1,2 (300,1,1,1,1,1) (1,1,1,1,0,23)", 23},
		{"227 port 0", 227, "227 (1,2,3,4,0,0)", 0},
		{"227 five numbers", 227, "227 (1,2,3,4,5)", 0},
		{"227 four digits", 227, "227 (1,2,3,4,5,1000)", 0},
		{"227 empty", 227, "227", 0},
		{"229 RFC 2428", 229, "229 Entering Extended Passive Mode (|||6446|)\r\n", 6446},
		{"229 other delimiter", 229, "229 ok (!!!21!)", 21},
		{"229 first paren is prose", 229, "229 (see below) (|||50000|)", 50000},
		{"229 port too big", 229, "229 (|||65536|)", 0},
		{"229 port 0", 229, "229 (|||0|)", 0},
		{"229 host given", 229, "229 (|1|1.2.3.4|21|)", 0},
		{"229 unclosed", 229, "229 (|||21|", 0},
		{"229 signed", 229, "229 (|||+21|)", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, err := passivePort(tt.code, tt.reply)
			if tt.port == 0 && err == nil {
				t.Errorf("passivePort(%q) = %d; want an error", tt.reply, port)
			}
			if tt.port != 0 && (err != nil || port != tt.port) {
				t.Errorf("passivePort(%q) = %d, %v; want %d", tt.reply, port, err, tt.port)
			}
		})
	}
}

func TestFTPParseDataAddrs(t *testing.T) {
	tests := []struct {
		verb, arg string
		want      string // "" for an error
	}{
		{"PORT", "127,0,0,1,4,1", "127.0.0.1:1025"},
		{"PORT", "10,0,0,255,255,255", "10.0.0.255:65535"},
		{"PORT", "127,0,0,1,0,0", ""},
		{"PORT", "127,0,0,1,4", ""},
		{"PORT", "127,0,0,1,4,1,1", ""},
		{"PORT", "256,0,0,1,4,1", ""},
		{"PORT", "127, 0,0,1,4,1", ""},
		{"PORT", "0127,0,0,1,4,1", ""},
		{"EPRT", "|1|132.235.1.2|6275|", "132.235.1.2:6275"},
		{"EPRT", "|2|1080::8:800:200C:417A|5282|", "[1080::8:800:200c:417a]:5282"},
		{"EPRT", "!1!10.0.0.1!21!", "10.0.0.1:21"},
		{"EPRT", "|1|::1|21|", ""},
		{"EPRT", "|2|10.0.0.1|21|", ""},
		{"EPRT", "|2|fe80::1%eth0|21|", ""},
		{"EPRT", "|3|10.0.0.1|21|", ""},
		{"EPRT", "|1|10.0.0.1|0|", ""},
		{"EPRT", "|1|10.0.0.1|21", ""},
		{"EPRT", " 1 10.0.0.1 21 ", ""},
		{"EPRT", "", ""},
	}
	for _, tt := range tests {
		parse := parsePORT
		if tt.verb == "EPRT" {
			parse = parseEPRT
		}
		ap, err := parse(tt.arg)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%s %q = %v; want an error", tt.verb, tt.arg, ap)
		case tt.want != "" && (err != nil || ap.String() != tt.want):
			t.Errorf("%s %q = %v, %v; want %s", tt.verb, tt.arg, ap, err, tt.want)
		}
	}
}

func TestFTPFormatDataAddrs(t *testing.T) {
	ap := netip.MustParseAddrPort("127.0.0.6:50021")
	if got, want := formatPORT(ap), "127,0,0,6,195,101"; got != want {
		t.Errorf("formatPORT = %q; want %q", got, want)
	}
	if got, want := formatEPRT(ap), "|1|127.0.0.6|50021|"; got != want {
		t.Errorf("formatEPRT = %q; want %q", got, want)
	}
	if got, want := formatEPRT(netip.MustParseAddrPort("[::1]:21")), "|2|::1|21|"; got != want {
		t.Errorf("formatEPRT = %q; want %q", got, want)
	}
}

func TestFTPReplyFraming(t *testing.T) {
	tests := []struct {
		line        string
		code        int
		multi, ok   bool
		endsCode220 bool
	}{
		{"220 ready\r\n", 220, false, true, true},
		{"220-welcome\r\n", 220, true, true, false},
		{"220\r\n", 220, false, true, true},
		{"220\n", 220, false, true, true},
		{"227 x\r\n", 227, false, true, false},
		{" 220 indented text\r\n", 0, false, false, false},
		{"22 short\r\n", 0, false, false, false},
		{"220x\r\n", 0, false, false, false},
		{"abc def\r\n", 0, false, false, false},
	}
	for _, tt := range tests {
		code, multi, ok := replyStart([]byte(tt.line))
		if code != tt.code || multi != tt.multi || ok != tt.ok {
			t.Errorf("replyStart(%q) = %d, %v, %v; want %d, %v, %v", tt.line, code, multi, ok, tt.code, tt.multi, tt.ok)
		}
		if got := replyEnd([]byte(tt.line), 220); got != tt.endsCode220 {
			t.Errorf("replyEnd(%q, 220) = %v; want %v", tt.line, got, tt.endsCode220)
		}
	}
}
