package grpoclient

import (
	"context"
	"errors"
	"fmt"
	"testing"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// exportsTrainer answers ListExports from a fixed list (newest first), two exports a page, filtered by
// state; its page token is "<state>:<index to go on from>", and one passed with another state is
// INVALID_ARGUMENT with a BadRequest naming page_token, as the trainer does.
type exportsTrainer struct {
	*promptsTrainer // token: the authorization header of each call
	exports         []*trainerv1.Export
	requests        chan *trainerv1.ListExportsRequest // each request as received
}

func (e *exportsTrainer) ListExports(ctx context.Context, req *trainerv1.ListExportsRequest) (*trainerv1.ListExportsResponse, error) {
	e.token(ctx)
	e.requests <- req
	start := 0
	if req.GetPageToken() != "" {
		var state int32
		if _, err := fmt.Sscanf(req.GetPageToken(), "%d:%d", &state, &start); err != nil ||
			trainerv1.ExportState(state) != req.GetState() {
			st, _ := status.New(codes.InvalidArgument, "invalid request: page_token: not from a request with this state").WithDetails(&errdetails.BadRequest{
				FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "page_token", Description: "not from a request with this state"}}})
			return nil, st.Err()
		}
	}
	var match []*trainerv1.Export
	for _, x := range e.exports {
		if req.GetState() == trainerv1.ExportState_EXPORT_STATE_UNSPECIFIED || x.GetState() == req.GetState() {
			match = append(match, x)
		}
	}
	end := start + 2
	if end >= len(match) {
		return &trainerv1.ListExportsResponse{Exports: match[start:]}, nil
	}
	return &trainerv1.ListExportsResponse{Exports: match[start:end], NextPageToken: fmt.Sprintf("%d:%d", req.GetState(), end)}, nil
}

func newExportsTrainer() *exportsTrainer {
	done, failed := trainerv1.ExportState_EXPORT_STATE_DONE, trainerv1.ExportState_EXPORT_STATE_FAILED
	return &exportsTrainer{
		promptsTrainer: &promptsTrainer{tokens: make(chan string, 16)},
		requests:       make(chan *trainerv1.ListExportsRequest, 16),
		exports: []*trainerv1.Export{
			{ExportId: "e5", State: done, Step: 50}, {ExportId: "e4", State: failed, Step: 40},
			{ExportId: "e3", State: done, Step: 30}, {ExportId: "e2", State: failed, Step: 20},
			{ExportId: "e1", State: done, Step: 10}}}
}

func exportIds(exports []*trainerv1.Export) []string {
	var ids []string
	for _, x := range exports {
		ids = append(ids, x.GetExportId())
	}
	return ids
}

// sent returns the state and page token of each ListExports request the trainer got since the last call.
func (e *exportsTrainer) sent(t *testing.T, calls int) []string {
	t.Helper()
	var out []string
	for i := 0; i < calls; i++ {
		req := <-e.requests
		if got := <-e.tokens; got != "Bearer t0k" {
			t.Fatalf("ListExports sent authorization %q", got)
		}
		out = append(out, fmt.Sprintf("%s %q", req.GetState(), req.GetPageToken()))
	}
	if len(e.requests) != 0 {
		t.Fatalf("%d more ListExports requests than the %d expected", len(e.requests), calls)
	}
	return out
}

func TestListExportsReadsEveryPageWithTheToken(t *testing.T) {
	e := newExportsTrainer()
	c := promptsClient(t, e)
	ctx := context.Background()

	page, err := c.ListExports(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ids := exportIds(page.GetExports()); fmt.Sprint(ids) != "[e5 e4]" || page.GetNextPageToken() != "0:2" {
		t.Fatalf("first page %v, want [e5 e4] and the next page token 0:2", page)
	}
	if got := e.sent(t, 1); got[0] != `EXPORT_STATE_UNSPECIFIED ""` {
		t.Fatalf("ListExports(nil) sent %v", got)
	}

	all, err := c.AllExports(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ids := exportIds(all); fmt.Sprint(ids) != "[e5 e4 e3 e2 e1]" || all[4].GetStep() != 10 {
		t.Fatalf("AllExports(nil) = %v, want [e5 e4 e3 e2 e1] across three pages", ids)
	}
	want := []string{`EXPORT_STATE_UNSPECIFIED ""`, `EXPORT_STATE_UNSPECIFIED "0:2"`, `EXPORT_STATE_UNSPECIFIED "0:4"`}
	if got := e.sent(t, 3); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AllExports(nil) sent %v, want %v", got, want)
	}
}

func TestListExportsForwardsTheStateFilter(t *testing.T) {
	e := newExportsTrainer()
	c := promptsClient(t, e)
	ctx := context.Background()

	req := &trainerv1.ListExportsRequest{State: trainerv1.ExportState_EXPORT_STATE_DONE}
	all, err := c.AllExports(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if ids := exportIds(all); fmt.Sprint(ids) != "[e5 e3 e1]" {
		t.Fatalf("AllExports(DONE) = %v, want [e5 e3 e1] across two pages", ids)
	}
	want := []string{`EXPORT_STATE_DONE ""`, `EXPORT_STATE_DONE "3:2"`}
	if got := e.sent(t, 2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("AllExports(DONE) sent %v, want %v", got, want)
	}
	if req.GetPageToken() != "" {
		t.Fatalf("AllExports changed the caller's request: page token %q", req.GetPageToken())
	}

	page, err := c.ListExports(ctx, &trainerv1.ListExportsRequest{State: trainerv1.ExportState_EXPORT_STATE_FAILED})
	if err != nil {
		t.Fatal(err)
	}
	if ids := exportIds(page.GetExports()); fmt.Sprint(ids) != "[e4 e2]" || page.GetNextPageToken() != "" {
		t.Fatalf("ListExports(FAILED) = %v, want [e4 e2] and no next page", page)
	}
	e.sent(t, 1)
}

func TestListExportsDecodesARejectedPageToken(t *testing.T) {
	e := newExportsTrainer()
	c := promptsClient(t, e)
	ctx := context.Background()

	// A token from a DONE listing passed with another state.
	_, err := c.ListExports(ctx, &trainerv1.ListExportsRequest{State: trainerv1.ExportState_EXPORT_STATE_FAILED, PageToken: "3:2"})
	var x *Error
	if !errors.As(err, &x) || x.Code != codes.InvalidArgument || x.Method != "ListExports" ||
		len(x.FieldViolations) != 1 || x.FieldViolations[0].Field != "page_token" {
		t.Fatalf("ListExports(FAILED, a DONE token) = %v, want an INVALID_ARGUMENT *Error naming page_token", err)
	}
	all, err := c.AllExports(ctx, &trainerv1.ListExportsRequest{PageToken: "3:2"})
	if !errors.As(err, &x) || x.Code != codes.InvalidArgument || x.Method != "ListExports" ||
		len(x.FieldViolations) != 1 || x.FieldViolations[0].Field != "page_token" || len(all) != 0 {
		t.Fatalf("AllExports(a DONE token) = %v, %v, want an INVALID_ARGUMENT *Error naming page_token", exportIds(all), err)
	}
	e.sent(t, 2)
}
