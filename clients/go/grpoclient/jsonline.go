package grpoclient

// A JSON reader for prompt-file lines that behaves as Python's json.loads does in the reference client
// (clients/python/grpo_client/prompts.py): the same error messages at the same columns (counted in
// characters, 1-based), every number kept as the text the line has, NaN/Infinity/-Infinity read as
// constants (so they can be named as not JSON), unpaired \uD800-style escapes kept as such (so they can
// be named), a repeated key keeping its first place with its last value (and named, to be refused), and
// lines nested deeper than maxDepth refused before decoding. Matching those rules is what makes a file
// refused by Python refused here with the same line, field and words.

import (
	"strconv"
	"strings"
)

// jString is a decoded JSON string as code points; an unpaired surrogate escape stays a surrogate.
type jString []rune

// jNumber is a JSON number: the text as written and its float64 value (±Inf beyond the range).
type jNumber struct {
	text  string
	value float64
}

// jConst is NaN, Infinity or -Infinity, which Python's json reads and JSON does not have.
type jConst struct{ name string }

// jObject is a decoded JSON object in its keys' first-seen order; repeated holds (by wtf8) the keys the
// line gives more than once.
type jObject struct {
	keys     []jString
	vals     []interface{}
	index    map[string]int
	repeated map[string]bool
}

// maxDepth is how deep arrays and objects may be inside each other in a line (a prompt needs 4).
const maxDepth = 64

// tooDeep is the 1-based column of the first [ or { nested deeper than maxDepth, brackets inside strings
// not counted, or 0 (Python's _too_deep).
func tooDeep(line []rune) int {
	depth, inString := 0, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
			if depth > maxDepth {
				return i + 1
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return 0
}

func (o *jObject) get(key string) (interface{}, bool) {
	i, ok := o.index[key]
	if !ok {
		return nil, false
	}
	return o.vals[i], true
}

func (o *jObject) has(key string) bool { _, ok := o.index[key]; return ok }

// wtf8 is a lossless map key for code points that may include surrogates.
func wtf8(r []rune) string {
	var b strings.Builder
	for _, c := range r {
		if c >= 0xD800 && c <= 0xDFFF {
			b.WriteByte(byte(0xE0 | (c >> 12)))
			b.WriteByte(byte(0x80 | ((c >> 6) & 0x3F)))
			b.WriteByte(byte(0x80 | (c & 0x3F)))
		} else {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// jsonError is a line that is not JSON: Python's message and the 0-based character position.
type jsonError struct {
	msg string
	pos int
}

type jsonReader struct {
	s []rune
}

// stopIteration is Python's scanner finding no value at pos ("Expecting value").
type stopIteration struct{ pos int }

// decodeJSONLine decodes a whole line (its line break is dropped first, as Python's reader does) or says
// why not, with the column Python's JSONDecodeError.colno gives.
func decodeJSONLine(line []rune) (interface{}, string, bool) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if col := tooDeep(line); col > 0 {
		return nil, "not valid JSON: nested deeper than " + strconv.Itoa(maxDepth) + " levels at column " + strconv.Itoa(col), false
	}
	v, err := decodeJSON(line)
	if err == nil {
		return v, "", true
	}
	col := err.pos + 1
	for i := err.pos - 1; i >= 0; i-- {
		if line[i] == '\n' {
			col = err.pos - i
			break
		}
	}
	return nil, "not valid JSON: " + err.msg + " at column " + strconv.Itoa(col), false
}

func decodeJSON(s []rune) (v interface{}, err *jsonError) {
	if len(s) > 0 && s[0] == '\ufeff' {
		return nil, &jsonError{"Unexpected UTF-8 BOM (decode using utf-8-sig)", 0}
	}
	r := &jsonReader{s: s}
	defer func() {
		if p := recover(); p != nil {
			switch e := p.(type) {
			case stopIteration:
				v, err = nil, &jsonError{"Expecting value", e.pos}
			case *jsonError:
				v, err = nil, e
			default:
				panic(p)
			}
		}
	}()
	idx := r.ws(0)
	v, end := r.scan(idx)
	end = r.ws(end)
	if end != len(s) {
		return nil, &jsonError{"Extra data", end}
	}
	return v, nil
}

func (r *jsonReader) ws(i int) int {
	for i < len(r.s) && (r.s[i] == ' ' || r.s[i] == '\t' || r.s[i] == '\n' || r.s[i] == '\r') {
		i++
	}
	return i
}

func (r *jsonReader) fail(msg string, pos int) { panic(&jsonError{msg, pos}) }

func (r *jsonReader) match(i int, word string) bool {
	w := []rune(word)
	if i+len(w) > len(r.s) {
		return false
	}
	for k, c := range w {
		if r.s[i+k] != c {
			return false
		}
	}
	return true
}

// scan reads the value at idx (CPython's scan_once_unicode) and returns it and the index after it.
func (r *jsonReader) scan(idx int) (interface{}, int) {
	if idx >= len(r.s) {
		panic(stopIteration{idx})
	}
	switch r.s[idx] {
	case '"':
		return r.str(idx + 1)
	case '{':
		return r.object(idx + 1)
	case '[':
		return r.array(idx + 1)
	case 'n':
		if r.match(idx, "null") {
			return nil, idx + 4
		}
	case 't':
		if r.match(idx, "true") {
			return true, idx + 4
		}
	case 'f':
		if r.match(idx, "false") {
			return false, idx + 5
		}
	case 'N':
		if r.match(idx, "NaN") {
			return jConst{"NaN"}, idx + 3
		}
	case 'I':
		if r.match(idx, "Infinity") {
			return jConst{"Infinity"}, idx + 8
		}
	case '-':
		if r.match(idx, "-Infinity") {
			return jConst{"-Infinity"}, idx + 9
		}
	}
	return r.number(idx)
}

func isDigit(c rune) bool { return c >= '0' && c <= '9' }

func (r *jsonReader) number(start int) (interface{}, int) {
	s, idx, end := r.s, start, len(r.s)-1
	if s[idx] == '-' {
		idx++
		if idx > end {
			panic(stopIteration{start})
		}
	}
	if s[idx] >= '1' && s[idx] <= '9' {
		idx++
		for idx <= end && isDigit(s[idx]) {
			idx++
		}
	} else if s[idx] == '0' {
		idx++
	} else {
		panic(stopIteration{start})
	}
	if idx < end && s[idx] == '.' && isDigit(s[idx+1]) {
		idx += 2
		for idx <= end && isDigit(s[idx]) {
			idx++
		}
	}
	if idx < end && (s[idx] == 'e' || s[idx] == 'E') {
		eStart := idx
		idx++
		if idx < end && (s[idx] == '-' || s[idx] == '+') {
			idx++
		}
		for idx <= end && isDigit(s[idx]) {
			idx++
		}
		if !isDigit(s[idx-1]) {
			idx = eStart
		}
	}
	text := string(s[start:idx])
	f, err := strconv.ParseFloat(text, 64)
	if err != nil { // out of range: ParseFloat gives ±Inf, as Python's float() does
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			panic(stopIteration{start})
		}
	}
	return jNumber{text, f}, idx
}

func hexValue(c rune) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// str reads a string whose opening quote is at begin-1 (CPython's scanstring_unicode, strict).
func (r *jsonReader) str(begin int) (interface{}, int) {
	s, n := r.s, len(r.s)
	var out []rune
	end := begin
	for {
		next := end
		var c rune
		for ; next < n; next++ {
			c = s[next]
			if c == '"' || c == '\\' {
				break
			}
			if c <= 0x1f {
				r.fail("Invalid control character at", next)
			}
		}
		if next >= n {
			r.fail("Unterminated string starting at", begin-1)
		}
		out = append(out, s[end:next]...)
		next++
		if c == '"' {
			return jString(out), next
		}
		if next == n {
			r.fail("Unterminated string starting at", begin-1)
		}
		c = s[next]
		if c != 'u' {
			end = next + 1
			switch c {
			case '"', '\\', '/':
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			default:
				r.fail("Invalid \\escape", end-2)
			}
			out = append(out, c)
			continue
		}
		next++
		end = next + 4
		if end >= n {
			r.fail("Invalid \\uXXXX escape", next-1)
		}
		c = 0
		for ; next < end; next++ {
			d, ok := hexValue(s[next])
			if !ok {
				r.fail("Invalid \\uXXXX escape", end-5)
			}
			c = c<<4 | d
		}
		if c >= 0xD800 && c <= 0xDBFF && end+6 < n && s[end] == '\\' && s[end+1] == 'u' {
			var c2 rune
			next = end + 2
			end += 6
			for ; next < end; next++ {
				d, ok := hexValue(s[next])
				if !ok {
					r.fail("Invalid \\uXXXX escape", end-5)
				}
				c2 = c2<<4 | d
			}
			if c2 >= 0xDC00 && c2 <= 0xDFFF {
				c = 0x10000 + ((c - 0xD800) << 10) + (c2 - 0xDC00)
			} else {
				end -= 6
			}
		}
		out = append(out, c)
	}
}

func (r *jsonReader) object(idx int) (interface{}, int) {
	s, end := r.s, len(r.s)-1
	obj := &jObject{index: map[string]int{}}
	idx = r.ws(idx)
	if idx <= end && s[idx] == '}' {
		return obj, idx + 1
	}
	for {
		if idx > end || s[idx] != '"' {
			r.fail("Expecting property name enclosed in double quotes", idx)
		}
		k, next := r.str(idx + 1)
		key := k.(jString)
		idx = r.ws(next)
		if idx > end || s[idx] != ':' {
			r.fail("Expecting ':' delimiter", idx)
		}
		idx = r.ws(idx + 1)
		val, next := r.scan(idx)
		w := wtf8(key)
		if i, ok := obj.index[w]; ok {
			obj.vals[i] = val
			if obj.repeated == nil {
				obj.repeated = map[string]bool{}
			}
			obj.repeated[w] = true
		} else {
			obj.index[w] = len(obj.keys)
			obj.keys = append(obj.keys, key)
			obj.vals = append(obj.vals, val)
		}
		idx = r.ws(next)
		if idx <= end && s[idx] == '}' {
			return obj, idx + 1
		}
		if idx > end || s[idx] != ',' {
			r.fail("Expecting ',' delimiter", idx)
		}
		idx = r.ws(idx + 1)
	}
}

func (r *jsonReader) array(idx int) (interface{}, int) {
	s, end := r.s, len(r.s)-1
	out := []interface{}{}
	idx = r.ws(idx)
	if idx <= end && s[idx] == ']' {
		return out, idx + 1
	}
	for {
		val, next := r.scan(idx)
		out = append(out, val)
		idx = r.ws(next)
		if idx <= end && s[idx] == ']' {
			return out, idx + 1
		}
		if idx > end || s[idx] != ',' {
			r.fail("Expecting ',' delimiter", idx)
		}
		idx = r.ws(idx + 1)
	}
}
