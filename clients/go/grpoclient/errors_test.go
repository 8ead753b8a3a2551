package grpoclient

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang/protobuf/ptypes"
	anypb "github.com/golang/protobuf/ptypes/any"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestBadRequestAndRetryInfoDecodeIntoError(t *testing.T) {
	st, err := status.New(codes.InvalidArgument, "1 bad field").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "prompts[1].messages[0].role", Description: "role 'robot' is not allowed"}}},
		&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(1500 * time.Millisecond)},
	)
	if err != nil {
		t.Fatal(err)
	}
	got := wrapError("SubmitPrompts", st.Err())
	var e *Error
	if !errors.As(got, &e) {
		t.Fatalf("want *Error, got %T", got)
	}
	if e.Code != codes.InvalidArgument || len(e.FieldViolations) != 1 || e.FieldViolations[0].Field != "prompts[1].messages[0].role" {
		t.Fatalf("unexpected error %+v", e)
	}
	if e.RetryDelay != 1500*time.Millisecond {
		t.Fatalf("retry delay %v, want 1.5s", e.RetryDelay)
	}
	want := "SubmitPrompts failed with INVALID_ARGUMENT: 1 bad field: prompts[1].messages[0].role: role 'robot' is not allowed"
	if e.Error() != want {
		t.Fatalf("message %q, want %q", e.Error(), want)
	}
	if status.Code(e) != codes.InvalidArgument {
		t.Fatalf("status.Code sees %v through *Error", status.Code(e))
	}
}

func TestErrorsWithoutStatusPassThrough(t *testing.T) {
	plain := errors.New("boom")
	if wrapError("StepStatus", plain) != plain {
		t.Fatal("a non-gRPC error must pass through unchanged")
	}
	if wrapError("StepStatus", nil) != nil {
		t.Fatal("nil stays nil")
	}
	e := wrapError("StepStatus", status.Error(codes.NotFound, "no step 9")).(*Error)
	if len(e.FieldViolations) != 0 || e.RetryDelay != 0 || !strings.Contains(e.Error(), "NOT_FOUND") {
		t.Fatalf("unexpected %+v", e)
	}
}

func TestPreconditionFailureTypesDecodeIntoError(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "step 3 failed during its update").WithDetails(
		&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
			{Type: "WEIGHTS_INCONSISTENT", Subject: "run", Description: "restart the trainer"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	e := wrapError("ExportCheckpoint", st.Err()).(*Error)
	if len(e.Preconditions) != 1 || e.Preconditions[0] != "WEIGHTS_INCONSISTENT" {
		t.Fatalf("preconditions %v, want [WEIGHTS_INCONSISTENT]", e.Preconditions)
	}
	if e.Code != codes.FailedPrecondition || len(e.FieldViolations) != 0 {
		t.Fatalf("unexpected error %+v", e)
	}
}

func TestStatusSeenThroughErrorKeepsEveryDetail(t *testing.T) {
	st, err := status.New(codes.NotFound, "no export with id 'x'").WithDetails(
		&errdetails.ResourceInfo{ResourceType: "export", ResourceName: "x", Description: "no export with id 'x'"},
	)
	if err != nil {
		t.Fatal(err)
	}
	var got error = wrapError("GetExport", st.Err())
	seen := status.Convert(got)
	if seen.Code() != codes.NotFound || seen.Message() != "no export with id 'x'" {
		t.Fatalf("status.Convert sees %v %q through *Error", seen.Code(), seen.Message())
	}
	details := seen.Details()
	if len(details) != 1 {
		t.Fatalf("status.Convert(err).Details() has %d details through *Error, want the 1 the server sent", len(details))
	}
	if info, ok := details[0].(*errdetails.ResourceInfo); !ok || info.GetResourceName() != "x" {
		t.Fatalf("detail %#v, want the ResourceInfo naming 'x'", details[0])
	}
}

func TestErrorDoesNotRepeatViolationsTheMessageAlreadyHas(t *testing.T) {
	// The trainer's message already spells its violations ("invalid request: ids: required: ..."): the
	// rendering must not say them twice, yet add those the message leaves out.
	st, err := status.New(codes.InvalidArgument, "invalid request: ids: required: 1 to 1000 ids").WithDetails(
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "ids", Description: "required: 1 to 1000 ids"},
			{Field: "page_size", Description: "must be >= 0"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	e := wrapError("CancelPrompts", st.Err()).(*Error)
	want := "CancelPrompts failed with INVALID_ARGUMENT: invalid request: ids: required: 1 to 1000 ids: page_size: must be >= 0"
	if e.Error() != want {
		t.Fatalf("message %q, want %q", e.Error(), want)
	}
	if strings.Count(e.Error(), "required: 1 to 1000 ids") != 1 {
		t.Fatalf("the violation is repeated: %q", e.Error())
	}
}

func TestResourceInfoAndQuotaFailureDecodeIntoError(t *testing.T) {
	st, _ := status.New(codes.NotFound, "step 99 has not run").WithDetails(
		&errdetails.ResourceInfo{ResourceType: "step", ResourceName: "99", Description: "step 99 has not run"})
	e := wrapError("StepStatus", st.Err()).(*Error)
	if e.ResourceType != "step" || e.ResourceName != "99" {
		t.Fatalf("resource %q %q, want step 99", e.ResourceType, e.ResourceName)
	}
	st, _ = status.New(codes.ResourceExhausted, "the prompt queue is full").WithDetails(
		&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(time.Second)},
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "queue", Description: "full"}}})
	e = wrapError("SubmitPrompts", st.Err()).(*Error)
	if len(e.QuotaSubjects) != 1 || e.QuotaSubjects[0] != "queue" || e.RetryDelay != time.Second {
		t.Fatalf("quota subjects %v, retry %v; want [queue] and 1s", e.QuotaSubjects, e.RetryDelay)
	}
}

// json.Marshal of an *Error is the Python client's TrainerError.to_dict, member for member and in its order
// (what `grpo --json` prints under "error"); a detail it does not decode is listed by type name.
func TestErrorMarshalsAsThePythonClientsToDict(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "full").WithDetails(
		&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "queue"}}},
		&errdetails.ResourceInfo{ResourceType: "step", ResourceName: "9"},
		&errdetails.ErrorInfo{Reason: "QUEUE_FULL"},
		&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{{Type: "RUN_STATE"}}},
		&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(2500 * time.Millisecond)},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "prompts", Description: "too many"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(wrapError("SubmitPrompts", st.Err()))
	if err != nil {
		t.Fatal(err)
	}
	// json.dumps(TrainerError(...).to_dict(), separators=(",", ":")) for the same status.
	want := `{"code":"RESOURCE_EXHAUSTED","message":"full","field_violations":[{"field":"prompts","description":"too many"}],` +
		`"retry_delay_seconds":2.5,"preconditions":["RUN_STATE"],"details":["google.rpc.ErrorInfo"],` +
		`"resource":{"type":"step","name":"9"},"quota_subjects":["queue"]}`
	if string(got) != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	got, err = json.Marshal(wrapError("StepStatus", status.Error(codes.Unavailable, "down")))
	if err != nil || string(got) != `{"code":"UNAVAILABLE","message":"down"}` {
		t.Fatalf("got %s (%v)", got, err)
	}
}

// A batch refused because the trainer's store disk is full (QuotaFailure subject "store") is not called a
// full queue: the advice is for the trainer's operator, not to wait for training to drain the queue.
func TestARefusalForAFullStoreDiskSaysSoNotAFullQueue(t *testing.T) {
	refusal := func(subject string) *Error {
		st, _ := status.New(codes.ResourceExhausted, "full").WithDetails(
			&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(time.Minute)},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: subject, Description: "full"}}})
		return wrapError("SubmitPrompts", st.Err()).(*Error)
	}
	no := false
	for subject, want := range map[string]string{
		"store": "Batch 2 was not queued. The 2 prompts of batch 1 (prompts 1-2) were accepted before it; the trainer keeps them. " +
			"The trainer's store disk stayed full through the retries: once its operator has made room, run the same command again",
		"queue": "The trainer's queue stayed full through the retries: once it has room, run the same command again",
	} {
		e := &SubmitError{Cause: refusal(subject), BatchIndex: 1, Batches: 2, BatchSize: 2, BatchFirst: 2, BatchPrompts: 2,
			AcceptedIDs: []string{"a", "b"}, RefusedBatchQueued: &no, TotalPrompts: 4}
		if got := e.Progress(); !strings.Contains(got, want) {
			t.Fatalf("subject %s: got\n%s\nwant it to contain\n%s", subject, got, want)
		}
	}
}

// A detail of a type this program does not link (grpc-go hands it over as an error, not a message) is
// still named in "details", as the Python client names it; it was left out.
func TestDetailsOfUnlinkedTypesAreNamed(t *testing.T) {
	help, err := ptypes.MarshalAny(&errdetails.Help{Links: []*errdetails.Help_Link{{Url: "https://example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	custom := &anypb.Any{TypeUrl: "type.googleapis.com/acme.v1.Custom", Value: []byte{8, 1}}
	st := status.FromProto(&spb.Status{Code: int32(codes.FailedPrecondition), Message: "no", Details: []*anypb.Any{help, custom}})
	e := wrapError("ExportCheckpoint", st.Err()).(*Error)
	got := otherDetails(e)
	if strings.Join(got, ",") != "google.rpc.Help,acme.v1.Custom" {
		t.Fatalf("other details %q, want both names", got)
	}
}
