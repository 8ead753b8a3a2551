package grpoclient

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestDialRefusesATokenAHeaderCannotCarryWithoutPrintingIt(t *testing.T) {
	cases := []struct{ token, want string }{
		{"secret-token\n", "U+000A at character 13 of 13"},
		{"two words", "U+0020 at character 4 of 9"},
		{"caf\u00e9-secret", "U+00E9 at character 4 of 11"},
		{"tab\tsecret", "U+0009 at character 4 of 10"},
	}
	for _, c := range cases {
		// Nothing listens on port 1: a token refused before dialling fails at once, with its own error.
		_, err := Dial(context.Background(), "127.0.0.1:1", Options{Token: c.token, DialTimeout: 200 * time.Millisecond})
		if err == nil {
			t.Fatalf("token %q accepted", c.token)
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, "Options.Token") {
			t.Errorf("token %q: error %q does not name %q", c.token, msg, c.want)
		}
		if strings.Contains(msg, "secret") || strings.Contains(msg, "words") {
			t.Errorf("token %q: error %q prints the token", c.token, msg)
		}
	}
}
