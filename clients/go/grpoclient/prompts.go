package grpoclient

// The prompt file format (DESIGN.md section 6): one JSON object a line, blank lines skipped.
//
//	{"id": "p1", "messages": [{"role": "user", "content": "What is 2+2?"}], "answer": "4",
//	 "rewards": [{"backend": "math", "weight": 1.0}], "metadata": {"task": "sum"}}
//	{"id": "c1", "messages": [...], "code": {"test_code": "def check(f): ...", "entry_point": "f",
//	 "io_cases": [{"stdin": "1", "expected_stdout": "2"}], "timeout_seconds": 5}}
//
// This is a port of clients/python/grpo_client/prompts.py, rule for rule: the same problems are found,
// named by the same line and field path with the same words, so that a file is judged alike by every
// client, and BatchRequestID gives the same request ids as Python's batch_request_id.

import (
	"bytes"
	"fmt"
	"io/ioutil"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	rewardv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/reward/v1"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
)

// MaxPromptErrors is how many problems a PromptFileError lists at most: a file with a systematic mistake
// would otherwise print thousands.
const MaxPromptErrors = 50

// PromptError is one problem in a prompt file: the 1-based Line, the Field path in that line's object
// ("" for the line as a whole) and what is wrong.
type PromptError struct {
	Line    int
	Field   string
	Message string
}

// Format renders "SOURCE:LINE: FIELD: MESSAGE" (without "FIELD: " when Field is empty).
func (e PromptError) Format(source string) string {
	if e.Field != "" {
		return fmt.Sprintf("%s:%d: %s: %s", source, e.Line, e.Field, e.Message)
	}
	return fmt.Sprintf("%s:%d: %s", source, e.Line, e.Message)
}

// PromptFileError is a prompt file with problems; Errors lists them (at most MaxPromptErrors). Nothing of
// such a file is sent.
type PromptFileError struct {
	Source string
	Errors []PromptError
}

// Error is one "SOURCE:LINE: FIELD: MESSAGE" line per problem.
func (e *PromptFileError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, p := range e.Errors {
		lines[i] = p.Format(e.Source)
	}
	return strings.Join(lines, "\n")
}

// PromptFile is a parsed prompt file: its Prompts in file order and Lines[i], the 1-based line Prompts[i]
// came from (blank lines count), so that what the trainer says about a prompt can name its line.
type PromptFile struct {
	Source  string
	Prompts []*trainerv1.Prompt
	Lines   []int
}

// LoadPromptFile reads a prompt file (UTF-8 JSON Lines) with the line of each prompt. A bad file is a
// *PromptFileError listing every problem (bytes that are not UTF-8 included); an unreadable one the
// os error.
func LoadPromptFile(path string) (*PromptFile, error) {
	data, err := ioutil.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePromptFile(data, path)
}

// ParsePromptFile parses the bytes of a prompt file; source names it in errors. Lines end at "\n",
// "\r\n" or "\r", as Python reads text files.
func ParsePromptFile(data []byte, source string) (*PromptFile, error) {
	out := &PromptFile{Source: source}
	var problems []PromptError
	firstLine := map[string]int{}
	for number, raw := range splitLines(data) {
		number++
		if number == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // the byte-order mark some editors write
		}
		errs := &promptErrors{line: number}
		if msg := undecodable(raw, number); msg != "" { // never blank: a bad byte is not whitespace
			errs.add("", msg)
		} else {
			text := []rune(string(raw))
			if isBlank(text) {
				continue
			}
			if obj, msg, ok := decodeJSONLine(text); !ok {
				errs.add("", msg)
			} else {
				prompt := parsePrompt(obj, errs)
				if len(errs.items) == 0 {
					if first, dup := firstLine[prompt.GetId()]; dup {
						errs.add("id", fmt.Sprintf("%s repeats the id of line %d", pyRepr(jString([]rune(prompt.GetId()))), first))
					} else {
						firstLine[prompt.GetId()] = number
						out.Prompts = append(out.Prompts, prompt)
						out.Lines = append(out.Lines, number)
					}
				}
			}
		}
		problems = append(problems, errs.items...)
		if len(problems) >= MaxPromptErrors {
			break
		}
	}
	if len(problems) > 0 {
		if len(problems) > MaxPromptErrors {
			problems = problems[:MaxPromptErrors]
		}
		return nil, &PromptFileError{Source: source, Errors: problems}
	}
	return out, nil
}

// splitLines cuts data at "\n", "\r\n" and "\r"; each line keeps its break as "\n" (Python's universal
// newlines), which matters for the columns of JSON errors at the end of a line.
func splitLines(data []byte) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\n':
			lines = append(lines, append(append([]byte{}, data[start:i]...), '\n'))
			start = i + 1
		case '\r':
			lines = append(lines, append(append([]byte{}, data[start:i]...), '\n'))
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			start = i + 1
		}
	}
	if start < len(data) {
		lines = append(lines, data[start:])
	}
	return lines
}

// isBlank is Python's `not text.strip()`: only Unicode whitespace (str.isspace).
func isBlank(text []rune) bool {
	for _, c := range text {
		if !pyIsSpace(c) {
			return false
		}
	}
	return true
}

func pyIsSpace(c rune) bool {
	return (c >= 0x1c && c <= 0x1f) || unicode.IsSpace(c)
}

// undecodable says why a line is not UTF-8 (its first bad byte), or "".
func undecodable(raw []byte, number int) string {
	for i := 0; i < len(raw); {
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size <= 1 {
			msg := fmt.Sprintf("not valid UTF-8: byte 0x%02x at byte %d", raw[i], i+1)
			if number == 1 && len(raw) >= 2 && ((raw[0] == 0xff && raw[1] == 0xfe) || (raw[0] == 0xfe && raw[1] == 0xff)) {
				return msg + " (the file starts with a UTF-16 byte-order mark: save it as UTF-8)"
			}
			return msg + "; prompt files are UTF-8"
		}
		i += size
	}
	return ""
}

type promptErrors struct {
	line  int
	items []PromptError
}

func (e *promptErrors) add(field, message string) {
	e.items = append(e.items, PromptError{Line: e.line, Field: field, Message: message})
}

var (
	promptKeys = []string{"answer", "code", "id", "messages", "metadata", "rewards"}
	codeKeys   = []string{"entry_point", "io_cases", "language", "test_code", "timeout_seconds"}
	// Fields other tools' datasets use for a prompt's text (TRL, verl, OpenAI chat files): the error says
	// where it goes.
	textKeys = map[string]bool{"prompt": true, "question": true, "problem": true, "query": true, "input": true, "instruction": true}
)

// jsonType is the JSON name of a decoded value's type, for messages.
func jsonType(v interface{}) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case jNumber:
		return "number"
	case jString:
		return "string"
	case *jObject:
		return "object"
	case []interface{}:
		return "array"
	}
	return "_Constant"
}

// fieldKey is a key in a field path: as it is when plain, else as a JSON string (ASCII, printable).
func fieldKey(key jString) string {
	plain := len(key) > 0
	for _, c := range key {
		if c < 0x20 || c > 0x7e || c == '.' {
			plain = false
		}
	}
	if plain {
		return string(key)
	}
	return jsonDumps(key)
}

// jsonDumps is Python's json.dumps of a string: ASCII only, \uXXXX escapes in lower case.
func jsonDumps(s jString) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case c >= 0x20 && c <= 0x7e:
				b.WriteRune(c)
			case c > 0xffff:
				v := c - 0x10000
				fmt.Fprintf(&b, `\u%04x\u%04x`, 0xd800|(v>>10), 0xdc00|(v&0x3ff))
			default:
				fmt.Fprintf(&b, `\u%04x`, c)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// textProblem says why the trainer refuses a string wherever it appears (a NUL, an unpaired surrogate).
func textProblem(s jString) string {
	for _, c := range s {
		if c == 0 {
			return "contains a NUL character (U+0000), which the trainer does not accept"
		}
	}
	for _, c := range s {
		if c >= 0xD800 && c <= 0xDFFF {
			return fmt.Sprintf("contains an unpaired surrogate (%s), which is not valid UTF-8 text; "+
				"write the character itself or its surrogate pair", jsonDumps(jString{c}))
		}
	}
	return ""
}

// repeatedKey is the problem of a key a line gives more than once (Python's REPEATED).
const repeatedKey = "given more than once: JSON keeps only the last, write it once"

// checkValues names every string and constant in a decoded line that no trainer accepts, and every key
// it gives more than once.
func checkValues(v interface{}, path string, errs *promptErrors) {
	switch v := v.(type) {
	case jConst:
		errs.add(path, fmt.Sprintf("%s is not valid JSON (JSON numbers are finite): write a number, or the string \"%s\"", v.name, v.name))
	case jString:
		if p := textProblem(v); p != "" {
			errs.add(path, p)
		}
	case *jObject:
		for i, key := range v.keys {
			sub := fieldKey(key)
			if path != "" {
				sub = path + "." + sub
			}
			if p := textProblem(key); p != "" {
				errs.add(sub, "the key "+p)
			}
			if v.repeated[wtf8(key)] {
				errs.add(sub, repeatedKey)
			}
			checkValues(v.vals[i], sub, errs)
		}
	case []interface{}:
		for i, item := range v {
			checkValues(item, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	}
}

func getString(obj *jObject, key, path string, errs *promptErrors, required bool) (string, bool) {
	v, ok := obj.get(key)
	if !ok {
		if required {
			errs.add(path, "required")
		}
		return "", false
	}
	s, ok := v.(jString)
	if !ok {
		errs.add(path, "must be a string, got "+jsonType(v))
		return "", false
	}
	return string(s), true
}

func getNumber(v interface{}, path string, errs *promptErrors) (float64, bool) {
	n, ok := v.(jNumber)
	if !ok || math.IsInf(n.value, 0) || math.IsNaN(n.value) {
		errs.add(path, "must be a finite number, got "+pyRepr(v))
		return 0, false
	}
	return n.value, true
}

func unknownFields(obj *jObject, allowed []string, prefix string, errs *promptErrors) {
	allow := map[string]bool{}
	for _, k := range allowed {
		allow[k] = true
	}
	var extra []string
	for _, k := range obj.keys {
		if !allow[string(k)] {
			extra = append(extra, string(k))
		}
	}
	sort.Strings(extra) // byte order of UTF-8 is code point order, as Python sorts
	for _, key := range extra {
		hint := ""
		if prefix == "" && textKeys[key] && !obj.has("messages") {
			hint = `; the text goes in "messages": [{"role": "user", "content": ...}]`
		}
		errs.add(prefix+key, fmt.Sprintf("unknown field (allowed: %s)%s", strings.Join(allowed, ", "), hint))
	}
}

// parsePrompt turns one decoded line into a Prompt, adding a problem to errs for each bad field.
func parsePrompt(v interface{}, errs *promptErrors) *trainerv1.Prompt {
	prompt := &trainerv1.Prompt{}
	before := len(errs.items)
	checkValues(v, "", errs)
	if len(errs.items) > before {
		return prompt
	}
	obj, ok := v.(*jObject)
	if !ok {
		errs.add("", "must be a JSON object, got "+jsonType(v))
		return prompt
	}
	unknownFields(obj, promptKeys, "", errs)
	if id, ok := getString(obj, "id", "id", errs, true); ok {
		if id == "" {
			errs.add("id", "must not be empty")
		}
		prompt.Id = id
	}
	messages, _ := obj.get("messages")
	if list, ok := messages.([]interface{}); !ok || len(list) == 0 {
		errs.add("messages", `required: a non-empty list of {"role", "content"}`)
	} else {
		for i, m := range list {
			path := fmt.Sprintf("messages[%d]", i)
			mo, ok := m.(*jObject)
			if !ok {
				errs.add(path, `must be an object with "role" and "content"`)
				continue
			}
			unknownFields(mo, []string{"content", "role"}, path+".", errs)
			role, _ := getString(mo, "role", path+".role", errs, true)
			content, _ := getString(mo, "content", path+".content", errs, true)
			prompt.Messages = append(prompt.Messages, &rewardv1.Message{Role: role, Content: content})
		}
	}
	if obj.has("answer") && obj.has("code") {
		errs.add("answer", `give either "answer" or "code", not both`)
	} else if answer, ok := obj.get("answer"); ok {
		switch a := answer.(type) {
		case jString:
			prompt.Reference = &trainerv1.Prompt_Answer{Answer: string(a)}
		case jNumber:
			prompt.Reference = &trainerv1.Prompt_Answer{Answer: a.text} // as written: the math verifier compares answers
		default:
			errs.add("answer", "must be a string (or a number), got "+jsonType(answer))
		}
	} else if code, ok := obj.get("code"); ok {
		tests := &rewardv1.CodeTests{}
		prompt.Reference = &trainerv1.Prompt_Code{Code: tests} // an empty object still selects `code`
		parseCode(code, tests, errs)
	}
	rewards, ok := obj.get("rewards")
	if !ok {
		rewards = []interface{}{}
	}
	if list, ok := rewards.([]interface{}); !ok {
		errs.add("rewards", `must be a list of {"backend", "weight"}`)
	} else {
		for i, r := range list {
			path := fmt.Sprintf("rewards[%d]", i)
			ro, ok := r.(*jObject)
			if !ok {
				errs.add(path, `must be an object with "backend" and optional "weight"`)
				continue
			}
			unknownFields(ro, []string{"backend", "weight"}, path+".", errs)
			backend, _ := getString(ro, "backend", path+".backend", errs, true)
			weight, weightOK := 1.0, true
			if w, ok := ro.get("weight"); ok {
				weight, weightOK = getNumber(w, path+".weight", errs)
			}
			if weightOK && weight <= 0 {
				errs.add(path+".weight", "must be > 0, got "+pyFloat(weight))
			}
			prompt.Rewards = append(prompt.Rewards, &trainerv1.RewardSpec{Backend: backend, Weight: weight})
		}
	}
	metadata, ok := obj.get("metadata")
	if !ok {
		metadata = &jObject{index: map[string]int{}}
	}
	if mo, ok := metadata.(*jObject); !ok {
		errs.add("metadata", "must be an object of string values")
	} else {
		for i, key := range mo.keys {
			value, ok := mo.vals[i].(jString)
			if !ok {
				errs.add("metadata."+fieldKey(key), "must be a string, got "+jsonType(mo.vals[i]))
				continue
			}
			if prompt.Metadata == nil {
				prompt.Metadata = map[string]string{}
			}
			prompt.Metadata[string(key)] = string(value)
		}
	}
	return prompt
}

func parseCode(v interface{}, out *rewardv1.CodeTests, errs *promptErrors) {
	code, ok := v.(*jObject)
	if !ok {
		errs.add("code", `must be an object with "test_code"/"entry_point" and/or "io_cases"`)
		return
	}
	unknownFields(code, codeKeys, "code.", errs)
	if s, ok := getString(code, "language", "code.language", errs, false); ok {
		out.Language = s
	}
	if s, ok := getString(code, "test_code", "code.test_code", errs, false); ok {
		out.TestCode = s
	}
	if s, ok := getString(code, "entry_point", "code.entry_point", errs, false); ok {
		out.EntryPoint = s
	}
	if t, ok := code.get("timeout_seconds"); ok {
		if f, ok := getNumber(t, "code.timeout_seconds", errs); ok {
			out.TimeoutSeconds = f
		}
	}
	cases, ok := code.get("io_cases")
	if !ok {
		cases = []interface{}{}
	}
	list, ok := cases.([]interface{})
	if !ok {
		errs.add("code.io_cases", `must be a list of {"stdin", "expected_stdout"}`)
		return
	}
	for i, c := range list {
		path := fmt.Sprintf("code.io_cases[%d]", i)
		co, ok := c.(*jObject)
		if !ok {
			errs.add(path, `must be an object with "stdin" and "expected_stdout"`)
			continue
		}
		unknownFields(co, []string{"expected_stdout", "stdin"}, path+".", errs)
		stdin, _ := getString(co, "stdin", path+".stdin", errs, false)
		expected, _ := getString(co, "expected_stdout", path+".expected_stdout", errs, true)
		out.IoCases = append(out.IoCases, &rewardv1.IOCase{Stdin: stdin, ExpectedStdout: expected})
	}
}

// pyRepr is Python's repr() of a decoded value, as the reference client's messages print it.
func pyRepr(v interface{}) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case jNumber:
		return v.text
	case jConst:
		return fmt.Sprintf("_Constant(name='%s')", v.name)
	case jString:
		return pyStrRepr(v)
	case []interface{}:
		parts := make([]string, len(v))
		for i, item := range v {
			parts[i] = pyRepr(item)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case *jObject:
		parts := make([]string, len(v.keys))
		for i, k := range v.keys {
			parts[i] = pyStrRepr(k) + ": " + pyRepr(v.vals[i])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

func pyStrRepr(s jString) string {
	quote := '\''
	hasSingle, hasDouble := false, false
	for _, c := range s {
		hasSingle = hasSingle || c == '\''
		hasDouble = hasDouble || c == '"'
	}
	if hasSingle && !hasDouble {
		quote = '"'
	}
	var b strings.Builder
	b.WriteRune(quote)
	for _, c := range s {
		switch {
		case c == quote || c == '\\':
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\t':
			b.WriteString(`\t`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		case c < 0x7f:
			b.WriteRune(c)
		case !(c >= 0xD800 && c <= 0xDFFF) && unicode.IsPrint(c):
			b.WriteRune(c)
		case c <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, c)
		case c <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			fmt.Fprintf(&b, `\U%08x`, c)
		}
	}
	b.WriteRune(quote)
	return b.String()
}

// pyFloat is Python's repr() of a float: the shortest digits that read back, positional from 1e-4 to
// below 1e16, else with an exponent of at least two digits.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // "-1.2345e+06"
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exp := e, 0
	if i := strings.IndexByte(e, 'e'); i >= 0 {
		mant = e[:i]
		exp, _ = strconv.Atoi(e[i+1:])
	}
	digits := strings.Replace(mant, ".", "", 1)
	decpt := exp + 1 // the decimal point after this many digits
	if decpt > -4 && decpt <= 16 {
		switch {
		case decpt <= 0:
			return sign + "0." + strings.Repeat("0", -decpt) + digits
		case decpt >= len(digits):
			return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
		default:
			return sign + digits[:decpt] + "." + digits[decpt:]
		}
	}
	m := digits[:1]
	if len(digits) > 1 {
		m += "." + digits[1:]
	}
	es := "+"
	if exp < 0 {
		es, exp = "-", -exp
	}
	return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
}
