package grpoclient

// The JSON form of a failed call, member for member and in the order the Python client's
// TrainerError.to_dict and SubmitError.to_dict give it (what `grpo --json` prints under "error").

import (
	"bytes"
	"encoding/json"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// jsonObject is a JSON object whose members keep the order they were added in, as Python's dicts do
// (encoding/json sorts a map's keys).
type jsonObject []jsonMember

// jsonMember is one member of a jsonObject; value is anything encoding/json marshals.
type jsonMember struct {
	key   string
	value interface{}
}

// MarshalJSON writes the members in order.
func (o jsonObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// MarshalJSON writes e as the Python client's TrainerError.to_dict gives it (what `grpo --json` prints
// under "error"): "code" and "message", then, each only when the status carried it, "field_violations"
// ([{"field", "description"}]), "retry_delay_seconds" (RetryInfo), "preconditions" (PreconditionFailure
// types), "details" (the type names of any other detail), "resource" ({"type", "name"}: ResourceInfo)
// and "quota_subjects" (QuotaFailure).
func (e *Error) MarshalJSON() ([]byte, error) { return json.Marshal(e.document(nil)) }

// document is the object MarshalJSON writes, each field violation's object passed through located (when
// not nil), which may add members to it.
func (e *Error) document(located func(violation int, item jsonObject) jsonObject) jsonObject {
	out := jsonObject{{"code", CodeName(e.Code)}, {"message", e.Message}}
	if len(e.FieldViolations) > 0 {
		items := make([]jsonObject, len(e.FieldViolations))
		for i, v := range e.FieldViolations {
			items[i] = jsonObject{{"field", v.Field}, {"description", v.Description}}
			if located != nil {
				items[i] = located(i, items[i])
			}
		}
		out = append(out, jsonMember{"field_violations", items})
	}
	var resource *errdetails.ResourceInfo
	var retry *errdetails.RetryInfo
	for _, d := range e.Details {
		switch d := d.(type) {
		case *errdetails.RetryInfo:
			retry = d
		case *errdetails.ResourceInfo:
			resource = d
		}
	}
	if retry != nil { // as Python adds them: seconds + nanos / 1e9
		delay := retry.GetRetryDelay()
		out = append(out, jsonMember{"retry_delay_seconds", float64(delay.GetSeconds()) + float64(delay.GetNanos())/1e9})
	}
	if len(e.Preconditions) > 0 {
		out = append(out, jsonMember{"preconditions", e.Preconditions})
	}
	if other := otherDetails(e); len(other) > 0 {
		out = append(out, jsonMember{"details", other})
	}
	if resource != nil {
		out = append(out, jsonMember{"resource", jsonObject{{"type", e.ResourceType}, {"name", e.ResourceName}}})
	}
	if len(e.QuotaSubjects) > 0 {
		out = append(out, jsonMember{"quota_subjects", e.QuotaSubjects})
	}
	return out
}

// MarshalJSON writes e as the Python client's SubmitError.to_dict gives it: the refused batch's Error,
// each field violation traced to a prompt with its "file" and "line" (from a file), "index", "id" and
// "prompt_field", and a "submission" object saying where the submission stopped ("file", "batch_index",
// "batches", "batch_size", "batch_first", "batch_prompts", "refused_batch_queued", "alone_too_large",
// "accepted_prompts", "accepted_through_line", "accepted_ids", "resized", "progress"); null where Python
// has None.
func (e *SubmitError) MarshalJSON() ([]byte, error) {
	out := e.Cause.document(func(violation int, item jsonObject) jsonObject {
		for _, l := range e.Located {
			if l.violation != violation {
				continue
			}
			if e.Source != "" && l.Line != 0 {
				item = append(item, jsonMember{"file", e.Source}, jsonMember{"line", l.Line})
			}
			return append(item, jsonMember{"index", l.Index}, jsonMember{"id", l.PromptID},
				jsonMember{"prompt_field", l.PromptField})
		}
		return item
	})
	var file, queued, through interface{} // null unless known
	if e.Source != "" {
		file = e.Source
	}
	if e.RefusedBatchQueued != nil {
		queued = *e.RefusedBatchQueued
	}
	if line := e.acceptedThroughLine(); line != 0 {
		through = line
	}
	alone := make([]jsonObject, len(e.AloneTooLarge))
	for i, p := range e.AloneTooLarge {
		var line interface{}
		if e.Lines != nil {
			line = e.Lines[p.Index]
		}
		alone[i] = jsonObject{{"index", p.Index}, {"id", p.ID}, {"line", line}}
	}
	return json.Marshal(append(out, jsonMember{"submission", jsonObject{
		{"file", file}, {"batch_index", e.BatchIndex}, {"batches", e.Batches}, {"batch_size", e.BatchSize},
		{"batch_first", e.BatchFirst}, {"batch_prompts", e.BatchPrompts}, {"refused_batch_queued", queued},
		{"alone_too_large", alone}, {"accepted_prompts", len(e.AcceptedIDs)}, {"accepted_through_line", through},
		{"accepted_ids", orEmpty(e.AcceptedIDs)}, {"resized", orEmpty(e.Resized)}, {"progress", e.Progress()},
	}}))
}

// orEmpty is s, or an empty list (JSON []) for nil.
func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
