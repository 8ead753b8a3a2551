package grpoclient

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang/protobuf/ptypes"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FieldViolation is one bad field of a rejected request. Field is a path into the request, such as
// "prompts[0].messages[0].role".
type FieldViolation struct {
	Field       string
	Description string
}

// Error is a failed call to the trainer: the gRPC code and message plus the google.rpc details the
// trainer sends in the grpc-status-details-bin trailer.
type Error struct {
	// Method is the RPC name, such as "SubmitPrompts".
	Method string
	// Code is the gRPC status code (codes.InvalidArgument, codes.ResourceExhausted, ...).
	Code codes.Code
	// Message is the server's status message.
	Message string
	// FieldViolations lists the fields a google.rpc.BadRequest detail named (INVALID_ARGUMENT).
	FieldViolations []FieldViolation
	// RetryDelay is how long to wait before retrying, from a google.rpc.RetryInfo detail; 0 when absent.
	RetryDelay time.Duration
	// Preconditions lists the violation types of a google.rpc.PreconditionFailure detail
	// (FAILED_PRECONDITION), such as "DESTINATION_NOT_EMPTY" or "WEIGHTS_INCONSISTENT".
	Preconditions []string
	// ResourceType and ResourceName are what a google.rpc.ResourceInfo detail names (NOT_FOUND): such as
	// "step" and "99", or "export" and its id; "" when absent.
	ResourceType, ResourceName string
	// QuotaSubjects lists what a google.rpc.QuotaFailure detail says is full (RESOURCE_EXHAUSTED): "queue"
	// or "watch_streams".
	QuotaSubjects []string
	// Details holds every decoded detail message (*errdetails.BadRequest, *errdetails.RetryInfo, ...);
	// a detail whose type is not linked into the program is an error value instead.
	Details []interface{}

	// st is the status as received, details included, for GRPCStatus.
	st *status.Status
}

// Error renders "METHOD failed with CODE: message: field: description; ...", each field violation
// appended only when the message does not already say it (the trainer's messages usually do).
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s failed with %s: %s", e.Method, CodeName(e.Code), e.Message)
	sep := ": "
	for _, v := range e.FieldViolations {
		text := v.Field + ": " + v.Description
		if strings.Contains(e.Message, text) {
			continue
		}
		b.WriteString(sep + text)
		sep = "; "
	}
	return b.String()
}

// DetailLines are the lines the Python client's TrainerError prints under "CODE: message" (what `grpo`
// shows of a refused call): each field violation, the RetryInfo delay whenever the status carries one
// ("retry after 2.5 s"), each precondition, and the type name of each detail neither client decodes.
func (e *Error) DetailLines() []string {
	var lines []string
	for _, v := range e.FieldViolations {
		lines = append(lines, "  "+v.Field+": "+v.Description)
	}
	if hasRetryInfo(e) {
		lines = append(lines, "  retry after "+strconv.FormatFloat(e.RetryDelay.Seconds(), 'g', 6, 64)+" s")
	}
	for _, p := range e.Preconditions {
		lines = append(lines, "  precondition: "+p)
	}
	for _, d := range otherDetails(e) {
		lines = append(lines, "  "+d)
	}
	return lines
}

// GRPCStatus lets status.FromError, status.Convert and status.Code see the original status through an
// *Error: its code, message and every detail (status.Convert(err).Details() lists them as received).
func (e *Error) GRPCStatus() *status.Status {
	if e.st != nil {
		return e.st
	}
	return status.New(e.Code, e.Message)
}

// CodeName is the canonical upper-case name of a gRPC code ("INVALID_ARGUMENT"), as the other clients
// and the protos spell it.
func CodeName(c codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
		codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
		codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
		codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL",
		codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if n, ok := names[c]; ok {
		return n
	}
	return fmt.Sprintf("CODE_%d", uint32(c))
}

// wrapError turns a gRPC error into an *Error; errors that carry no gRPC status pass through unchanged.
func wrapError(method string, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	e := &Error{Method: method, Code: st.Code(), Message: st.Message(), Details: st.Details(), st: st}
	for _, d := range e.Details {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.RetryInfo:
			if delay, err := ptypes.Duration(d.GetRetryDelay()); err == nil {
				e.RetryDelay = delay
			}
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				e.Preconditions = append(e.Preconditions, v.GetType())
			}
		case *errdetails.ResourceInfo:
			e.ResourceType, e.ResourceName = d.GetResourceType(), d.GetResourceName()
		case *errdetails.QuotaFailure:
			for _, v := range d.GetViolations() {
				e.QuotaSubjects = append(e.QuotaSubjects, v.GetSubject())
			}
		}
	}
	return e
}
