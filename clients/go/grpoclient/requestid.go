package grpoclient

// The idempotency key of a batch, byte for byte as the Python client computes it, so that a file
// submitted from any client and then from another is answered as a duplicate, not queued twice.

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"sort"
	"strconv"

	rewardv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/reward/v1"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
)

// BatchRequestID is the request id of batch index (0-based) of a submission.
//
// With prefix "" it is "sub-" and the first 40 hex digits of a SHA-256 over "grpo-submit/v1/<index>/"
// and, for each prompt, its length (8 bytes, big-endian) and its deterministic protobuf serialisation
// (fields in number order, map entries in upb's key order): submitting the same file with the same batch
// size again sends the same ids, and the trainer answers "duplicate" instead of queueing the prompts
// twice. With a prefix (the user's request id) it is "<prefix>-<index>".
func BatchRequestID(batch []*trainerv1.Prompt, index int, prefix string) string {
	if prefix != "" {
		return prefix + "-" + strconv.Itoa(index)
	}
	h := sha256.New()
	h.Write([]byte("grpo-submit/v1/" + strconv.Itoa(index) + "/"))
	var n [8]byte
	for _, p := range batch {
		data := MarshalPrompt(p)
		binary.BigEndian.PutUint64(n[:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
	}
	return "sub-" + hex.EncodeToString(h.Sum(nil))[:40]
}

// MarshalPrompt is the deterministic serialisation of a Prompt that Python's
// SerializeToString(deterministic=True) gives: fields in number order, proto3 defaults left out (a
// double is left out only when its bits are all zero: -0.0 is written), the oneof member written when
// set even if empty, map entries sorted by key as upb sorts them (upbKeyLess) with both key and value written.
func MarshalPrompt(p *trainerv1.Prompt) []byte {
	var b []byte
	b = appendString(b, 1, p.GetId())
	for _, m := range p.GetMessages() {
		b = appendMessage(b, 2, appendMessageFields(nil, m))
	}
	switch r := p.GetReference().(type) {
	case *trainerv1.Prompt_Answer:
		b = appendMessage(b, 3, []byte(r.Answer)) // a string is written as bytes with the same tag shape
	case *trainerv1.Prompt_Code:
		b = appendMessage(b, 4, appendCode(nil, r.Code))
	}
	for _, r := range p.GetRewards() {
		var rb []byte
		rb = appendString(rb, 1, r.GetBackend())
		rb = appendDouble(rb, 2, r.GetWeight())
		b = appendMessage(b, 5, rb)
	}
	keys := make([]string, 0, len(p.GetMetadata()))
	for k := range p.GetMetadata() {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return upbKeyLess(keys[i], keys[j]) })
	for _, k := range keys {
		var e []byte
		e = appendMessage(e, 1, []byte(k))
		e = appendMessage(e, 2, []byte(p.GetMetadata()[k]))
		b = appendMessage(b, 6, e)
	}
	return b
}

// upbKeyLess is the order Python's protobuf (upb) writes map keys in with deterministic=True: bytes
// compared over the shorter length, and of two keys where one begins the other, the longer first
// ("abc", "ab", "a", "b", ..., "" last).
func upbKeyLess(a, b string) bool {
	n := len(a)
	if len(b) < n {
		n = len(b)
	}
	if a[:n] != b[:n] {
		return a[:n] < b[:n]
	}
	return len(a) > len(b)
}

func appendMessageFields(b []byte, m *rewardv1.Message) []byte {
	b = appendString(b, 1, m.GetRole())
	return appendString(b, 2, m.GetContent())
}

func appendCode(b []byte, c *rewardv1.CodeTests) []byte {
	b = appendString(b, 1, c.GetLanguage())
	b = appendString(b, 2, c.GetTestCode())
	b = appendString(b, 3, c.GetEntryPoint())
	for _, io := range c.GetIoCases() {
		var ib []byte
		ib = appendString(ib, 1, io.GetStdin())
		ib = appendString(ib, 2, io.GetExpectedStdout())
		b = appendMessage(b, 4, ib)
	}
	return appendDouble(b, 5, c.GetTimeoutSeconds())
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// appendMessage writes a length-delimited field (wire type 2), empty or not.
func appendMessage(b []byte, field int, data []byte) []byte {
	b = appendVarint(b, uint64(field)<<3|2)
	b = appendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// appendString writes a proto3 string field unless it is empty.
func appendString(b []byte, field int, s string) []byte {
	if s == "" {
		return b
	}
	return appendMessage(b, field, []byte(s))
}

// appendDouble writes a proto3 double field unless its bits are all zero.
func appendDouble(b []byte, field int, f float64) []byte {
	bits := math.Float64bits(f)
	if bits == 0 {
		return b
	}
	b = appendVarint(b, uint64(field)<<3|1)
	var x [8]byte
	binary.LittleEndian.PutUint64(x[:], bits)
	return append(b, x[:]...)
}
