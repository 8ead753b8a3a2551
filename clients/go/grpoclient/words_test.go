package grpoclient

import (
	"strings"
	"testing"
)

// One of a thing is said in the singular, any other number in the plural, as the Python and TypeScript
// clients say it: "1 prompt", "2 batches", "0 queued prompts".
func TestCountedSaysOneInTheSingularAndAnyOtherNumberInThePlural(t *testing.T) {
	for _, c := range []struct {
		n    int
		noun string
		want string
	}{
		{1, "prompt", "1 prompt"}, {0, "prompt", "0 prompts"}, {1, "batch", "1 batch"}, {2, "batch", "2 batches"},
		{3, "queued prompt", "3 queued prompts"}, {1, "argument", "1 argument"},
	} {
		if got := Counted(c.n, c.noun); got != c.want {
			t.Errorf("Counted(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
	if got := Span("line", 3, 3); got != "line 3" {
		t.Errorf("Span(line, 3, 3) = %q", got)
	}
	if got := Span("line", 3, 4); got != "lines 3-4" {
		t.Errorf("Span(line, 3, 4) = %q", got)
	}
}

// A server's reason is quoted on one line and cut to 200 characters, counted as Unicode code points
// (as Python and the TypeScript client count them), not bytes.
func TestShortReasonIsOneLineOfAtMost200Characters(t *testing.T) {
	if got := ShortReason(" the tokenizer\n  is loading "); got != "the tokenizer is loading" {
		t.Errorf("got %q", got)
	}
	if got := ShortReason(""); got != "" {
		t.Errorf("got %q", got)
	}
	if got, want := ShortReason(strings.Repeat("é", 250)), strings.Repeat("é", 197)+"..."; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := ShortReason(strings.Repeat("x", 200)); got != strings.Repeat("x", 200) {
		t.Errorf("a reason of exactly 200 characters was cut: %q", got)
	}
}
