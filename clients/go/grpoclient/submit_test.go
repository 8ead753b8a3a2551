package grpoclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang/protobuf/ptypes"
	rewardv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/reward/v1"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// submitTrainer answers SubmitPrompts: it refuses the first `full` calls with RESOURCE_EXHAUSTED and a
// 250 ms RetryInfo and a QuotaFailure (a full queue, as the trainer says it), then accepts; it keeps each request it got.
// With lose set, it stores the first request and answers it UNAVAILABLE (an answer lost on the way back),
// then answers the same request id as a duplicate of that first answer, as the trainer does.
// With depth set, it refuses a request of more prompts than that as the trainer refuses one over its
// limits.max_queue_depth (INVALID_ARGUMENT, a BadRequest on the field "prompts").
type submitTrainer struct {
	trainerv1.UnimplementedTrainerServiceServer
	full     int
	depth    int
	lose     bool
	seen     map[string]bool
	requests chan *trainerv1.SubmitPromptsRequest
}

func (s *submitTrainer) SubmitPrompts(_ context.Context, req *trainerv1.SubmitPromptsRequest) (*trainerv1.SubmitPromptsResponse, error) {
	s.requests <- req
	if s.depth > 0 && len(req.GetPrompts()) > s.depth {
		st, _ := status.New(codes.InvalidArgument, "invalid request").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "prompts",
				Description: fmt.Sprintf("%d prompts can never fit a queue of at most %d; send fewer", len(req.GetPrompts()), s.depth)}}})
		return nil, st.Err()
	}
	if s.lose {
		var ids []string
		for _, p := range req.GetPrompts() {
			ids = append(ids, p.GetId())
		}
		if s.seen == nil {
			s.seen = map[string]bool{}
		}
		if !s.seen[req.GetRequestId()] {
			s.seen[req.GetRequestId()] = true
			return nil, status.Error(codes.Unavailable, "Connection reset by peer")
		}
		return &trainerv1.SubmitPromptsResponse{AcceptedIds: ids, QueueDepth: int64(len(ids)), Duplicate: true}, nil
	}
	if s.full > 0 {
		s.full--
		st, _ := status.New(codes.ResourceExhausted, "the prompt queue is full").WithDetails(
			&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(250 * time.Millisecond)},
			&errdetails.QuotaFailure{Violations: []*errdetails.QuotaFailure_Violation{{Subject: "queue", Description: "full"}}})
		return nil, st.Err()
	}
	var ids []string
	for _, p := range req.GetPrompts() {
		ids = append(ids, p.GetId())
	}
	return &trainerv1.SubmitPromptsResponse{AcceptedIds: ids, QueueDepth: int64(len(ids))}, nil
}

func submitClient(t *testing.T, s *submitTrainer) *Client {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(srv, s)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, l.Addr().String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func onePrompt(id string) *trainerv1.Prompt {
	return &trainerv1.Prompt{
		Id:        id,
		Messages:  []*rewardv1.Message{{Role: "user", Content: "What is 1 + 1?"}},
		Reference: &trainerv1.Prompt_Answer{Answer: "2"},
	}
}

// A batch refused because the queue is full is sent again after the trainer's delay, and OnRetry hears of
// each wait before it starts (the CLI prints it: a silent wait looks like a hang).
func TestSubmitAllReportsEachRetryBeforeWaiting(t *testing.T) {
	s := &submitTrainer{full: 2, requests: make(chan *trainerv1.SubmitPromptsRequest, 8)}
	c := submitClient(t, s)
	type retry struct {
		code    codes.Code
		wait    time.Duration
		attempt int
	}
	var retries []retry
	res, err := c.SubmitAll(context.Background(), []*trainerv1.Prompt{onePrompt("a")}, SubmitOptions{
		OnRetry: func(e *Error, wait time.Duration, attempt int) {
			retries = append(retries, retry{e.Code, wait, attempt})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.AcceptedIDs) != 1 || len(s.requests) != 3 {
		t.Fatalf("accepted %v after %d calls; want [a] after 3", res.AcceptedIDs, len(s.requests))
	}
	want := []retry{{codes.ResourceExhausted, 250 * time.Millisecond, 1}, {codes.ResourceExhausted, 250 * time.Millisecond, 2}}
	if len(retries) != len(want) || retries[0] != want[0] || retries[1] != want[1] {
		t.Fatalf("OnRetry got %v, want %v", retries, want)
	}
}

// A queue that stays full through every attempt ends in a *SubmitError that reads as the Python client's:
// the retry delay, and no bare "google.rpc.QuotaFailure" line (Python decodes that detail too).
func TestSubmitErrorOfAQueueFullThroughTheRetries(t *testing.T) {
	s := &submitTrainer{full: 10, requests: make(chan *trainerv1.SubmitPromptsRequest, 8)}
	c := submitClient(t, s)
	_, err := c.SubmitAll(context.Background(), []*trainerv1.Prompt{onePrompt("a")}, SubmitOptions{MaxAttempts: 2})
	var refused *SubmitError
	if !errors.As(err, &refused) {
		t.Fatalf("want a *SubmitError, got %v", err)
	}
	text := refused.Error()
	if !strings.Contains(text, "\n  retry after 0.25 s\n") || strings.Contains(text, "google.rpc.") {
		t.Fatalf("unexpected message:\n%s", text)
	}
	if len(refused.Cause.QuotaSubjects) != 1 || refused.Cause.QuotaSubjects[0] != "queue" {
		t.Fatalf("quota subjects %v, want [queue]", refused.Cause.QuotaSubjects)
	}
}

// A batch stored by the trainer whose answer was lost (UNAVAILABLE) is sent again and answered as a duplicate:
// it is this run's own batch, queued now. Counted as a replay, the example said "submitted before" and advised
// a new request id, which would have queued the prompts twice.
func TestSubmitAllCountsABatchWhoseAnswerWasLostAsQueued(t *testing.T) {
	saved := sleepFor
	sleepFor = func(context.Context, time.Duration) error { return nil }
	t.Cleanup(func() { sleepFor = saved })
	s := &submitTrainer{lose: true, requests: make(chan *trainerv1.SubmitPromptsRequest, 8)}
	c := submitClient(t, s)
	res, err := c.SubmitAll(context.Background(), []*trainerv1.Prompt{onePrompt("a")}, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.requests) != 2 || len(res.AcceptedIDs) != 1 || res.DuplicateBatches != 0 || len(res.ReplayedIDs) != 0 {
		t.Fatalf("after %d calls: accepted %v, %d duplicate batches, replayed %v; want [a], 0, []",
			len(s.requests), res.AcceptedIDs, res.DuplicateBatches, res.ReplayedIDs)
	}
}

// A batch of more prompts than the trainer's queue holds can never be queued: it is sent again in batches
// that fit (it was a *SubmitError telling the user to fix the file).
func TestSubmitAllSendsABatchOverTheQueueDepthInBatchesThatFit(t *testing.T) {
	s := &submitTrainer{depth: 3, requests: make(chan *trainerv1.SubmitPromptsRequest, 8)}
	c := submitClient(t, s)
	var prompts []*trainerv1.Prompt
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		prompts = append(prompts, onePrompt(id))
	}
	res, err := c.SubmitAll(context.Background(), prompts, SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for len(s.requests) > 0 {
		sizes = append(sizes, len((<-s.requests).GetPrompts()))
	}
	if fmt.Sprint(sizes) != "[5 3 2]" || len(res.AcceptedIDs) != 5 || len(res.Resized) != 1 {
		t.Fatalf("sent batches of %v, accepted %v, resized %v; want [5 3 2], 5 ids, one note", sizes, res.AcceptedIDs, res.Resized)
	}
}
