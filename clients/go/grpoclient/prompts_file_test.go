package grpoclient

import (
	"strings"
	"testing"
)

// The request ids and problems below are what the Python client (the reference) gives for the same bytes;
// tests/integration/clients/test_prompt_files.py compares many more files against Python directly.
func TestBatchRequestIDsMatchThePythonClient(t *testing.T) {
	data := []byte("{\"id\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"answer\":2.50}\n\n" +
		"{\"id\":\"b\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"metadata\":{\"10\":\"a\",\"9\":\"b\"},\"rewards\":[{\"backend\":\"math\",\"weight\":0.5}]}\n")
	f, err := ParsePromptFile(data, "p.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Lines) != 2 || f.Lines[0] != 1 || f.Lines[1] != 3 {
		t.Fatalf("lines %v, want [1 3]", f.Lines)
	}
	for _, c := range []struct {
		got, want string
	}{
		{BatchRequestID(f.Prompts[:1], 0, ""), "sub-da543f6f14fc4425aef3cdc329435d5788f3e935"},
		{BatchRequestID(f.Prompts[1:], 1, ""), "sub-3e7d5afdec331e2719fb0a9e070ca00cdaa5c7e9"},
		{BatchRequestID(f.Prompts, 0, ""), "sub-922be0c90e88c95a5bc4bedbc41b0d89ad1c5006"},
		{BatchRequestID(f.Prompts, 3, "run"), "run-3"},
	} {
		if c.got != c.want {
			t.Errorf("request id %s, want %s", c.got, c.want)
		}
	}
}

func TestMapKeysAreWrittenInUpbOrder(t *testing.T) {
	keys := []string{"b", "", "abc", "a", "ab", "ba"}
	want := []string{"abc", "ab", "a", "ba", "b", ""}
	for i := range keys {
		for j := range keys {
			if got := upbKeyLess(keys[i], keys[j]); got != (index(want, keys[i]) < index(want, keys[j])) {
				t.Errorf("upbKeyLess(%q, %q) = %v", keys[i], keys[j], got)
			}
		}
	}
}

func index(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func TestPromptFileProblemsNameLineFieldAndWordsAsPythonDoes(t *testing.T) {
	data := []byte("{\"id\": \"a\", \"prompt\": \"hi\"}\n" +
		"{\"id\": \"b\", \"messages\": [{\"role\": \"user\", \"content\": \"c\"}], \"rewards\": [{\"backend\": \"m\", \"weight\": \"abc\"}, {\"backend\": \"m\", \"weight\": 0}]}\n" +
		"[1,]\n" +
		"{\"id\": \"a\", \"messages\": [{\"role\": \"user\", \"content\": \"\\ud800\"}]}\n" +
		"caf\xc3\n")
	_, err := ParsePromptFile(data, "f.jsonl")
	bad, ok := err.(*PromptFileError)
	if !ok {
		t.Fatalf("want *PromptFileError, got %v", err)
	}
	want := strings.Join([]string{
		`f.jsonl:1: prompt: unknown field (allowed: answer, code, id, messages, metadata, rewards); the text goes in "messages": [{"role": "user", "content": ...}]`,
		`f.jsonl:1: messages: required: a non-empty list of {"role", "content"}`,
		`f.jsonl:2: rewards[0].weight: must be a finite number, got 'abc'`,
		`f.jsonl:2: rewards[1].weight: must be > 0, got 0.0`,
		`f.jsonl:3: not valid JSON: Expecting value at column 4`,
		`f.jsonl:4: messages[0].content: contains an unpaired surrogate ("\ud800"), which is not valid UTF-8 text; write the character itself or its surrogate pair`,
		`f.jsonl:5: not valid UTF-8: byte 0xc3 at byte 4; prompt files are UTF-8`,
	}, "\n")
	if bad.Error() != want {
		t.Fatalf("got\n%s\nwant\n%s", bad.Error(), want)
	}
}
