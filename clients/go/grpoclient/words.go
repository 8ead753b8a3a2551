package grpoclient

import (
	"fmt"
	"regexp"
	"strings"
)

// ReasonChars is the most characters of a server's message a one-line notice quotes (ShortReason).
const ReasonChars = 200

// Counted is n and noun, the noun plural unless n is 1: Counted(1, "batch") is "1 batch", Counted(2,
// "batch") "2 batches", Counted(0, "queued prompt") "0 queued prompts". The last word takes "es" after s,
// x, ch or sh, else "s" (the nouns the clients count are regular). The Python client's
// grpo_client/words.py and the TypeScript client's src/words.ts spell counts the same way.
func Counted(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	for _, end := range []string{"s", "x", "ch", "sh"} {
		if strings.HasSuffix(noun, end) {
			return fmt.Sprintf("%d %ses", n, noun)
		}
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// Span is items a..b of a kind as "lines 3-4", or "line 3" when a is b.
func Span(word string, a, b int) string {
	if a == b {
		return fmt.Sprintf("%s %d", word, a)
	}
	return fmt.Sprintf("%ss %d-%d", word, a, b)
}

var blanks = regexp.MustCompile(`[ \t\r\n]+`)

// ShortReason is a server's status message on one line (runs of spaces, tabs and line breaks become one
// space) and at most ReasonChars characters (Unicode code points): a longer one is cut to ReasonChars - 3
// and ends with "..."; "" when the message has no text.
func ShortReason(message string) string {
	text := strings.Trim(blanks.ReplaceAllString(message, " "), " ")
	chars := []rune(text)
	if len(chars) <= ReasonChars {
		return text
	}
	return string(chars[:ReasonChars-3]) + "..."
}
