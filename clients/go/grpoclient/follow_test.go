package grpoclient

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	timestamp "github.com/golang/protobuf/ptypes/timestamp"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

const (
	running   = trainerv1.StepState_STEP_STATE_RUNNING
	completed = trainerv1.StepState_STEP_STATE_COMPLETED
	failed    = trainerv1.StepState_STEP_STATE_FAILED
)

// response is a WatchSteps message: step's report (started at second startedAt) and the run's checkpoint.
func response(step int64, state trainerv1.StepState, startedAt int64, checkpoint int64) *trainerv1.WatchStepsResponse {
	return &trainerv1.WatchStepsResponse{
		Step: &trainerv1.StepReport{Step: step, State: state, StartedAt: &timestamp.Timestamp{Seconds: startedAt, Nanos: 7}},
		Run:  &trainerv1.RunStatus{CheckpointStep: checkpoint},
	}
}

// admitAll feeds one stream's messages and returns the steps delivered, in order.
func admitAll(f *followState, msgs ...*trainerv1.WatchStepsResponse) []int64 {
	var out []int64
	for _, m := range msgs {
		if f.admit(m) {
			out = append(out, m.GetStep().GetStep())
		}
	}
	return out
}

func equalSteps(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFollowResumesAfterTheLowerOfLastStepAndCheckpoint(t *testing.T) {
	f := newFollowState(5)
	if got := f.resumeAfter(); got != 5 {
		t.Fatalf("before any response: resume after %d, want the caller's 5", got)
	}
	admitAll(f, response(6, completed, 100, 4), response(7, completed, 110, 4))
	if got := f.resumeAfter(); got != 4 {
		t.Fatalf("last step 7, checkpoint 4: resume after %d, want 4 (a restart runs 5-7 again)", got)
	}
	admitAll(f, response(8, completed, 120, 8))
	if got := f.resumeAfter(); got != 8 {
		t.Fatalf("last step 8, checkpoint 8: resume after %d, want 8", got)
	}
}

func TestFollowRunningReportDoesNotMoveTheResumePoint(t *testing.T) {
	f := newFollowState(0)
	admitAll(f, response(1, completed, 100, 1), response(2, running, 110, 1))
	if got := f.resumeAfter(); got != 1 {
		t.Fatalf("step 2 only started: resume after %d, want 1", got)
	}
}

func TestFollowSkipsReportsDeliveredBeforeAndKeepsNewRunsOfAStep(t *testing.T) {
	f := newFollowState(0)
	// The first trainer: steps 1-3 finish, the checkpoint is at 2; then it is killed.
	if got := admitAll(f, response(1, completed, 100, 1), response(2, completed, 110, 2), response(3, completed, 120, 2)); !equalSteps(got, []int64{1, 2, 3}) {
		t.Fatalf("first stream delivered %v, want [1 2 3]", got)
	}
	if got := f.resumeAfter(); got != 2 {
		t.Fatalf("resume after %d, want 2", got)
	}
	// A reconnect before the restart ran step 3 again: the backlog after step 2 repeats step 3, then the
	// restart turns it FAILED ("lost: ...") and runs it again.
	got := admitAll(f,
		response(3, completed, 120, 2), // already delivered: skipped
		response(3, failed, 120, 2),    // the same run, now lost
		response(3, completed, 130, 2), // the new run
		response(4, completed, 140, 4),
	)
	if !equalSteps(got, []int64{3, 3, 4}) {
		t.Fatalf("second stream delivered %v, want [3 3 4] (the old run's COMPLETED skipped)", got)
	}
	// A third stream after step 4 (the checkpoint) sends nothing old; step 5 is new.
	if got := f.resumeAfter(); got != 4 {
		t.Fatalf("resume after %d, want 4", got)
	}
	if got := admitAll(f, response(5, completed, 150, 4), response(5, completed, 150, 4)); !equalSteps(got, []int64{5}) {
		t.Fatalf("third stream delivered %v, want [5] once", got)
	}
}

func TestFollowForgetsStepsAtOrBelowTheResumePoint(t *testing.T) {
	f := newFollowState(0)
	admitAll(f, response(1, completed, 100, 0), response(2, completed, 110, 0), response(3, completed, 120, 2))
	for step := range f.delivered {
		if step <= 2 {
			t.Fatalf("step %d is at or below min(last 3, checkpoint 2) but is still remembered: %v", step, f.delivered)
		}
	}
	if _, ok := f.delivered[3]; !ok {
		t.Fatalf("step 3 is after the checkpoint, a new stream sends it again: it must be remembered (%v)", f.delivered)
	}
}

// deadClient is a Client of a loopback port nothing listens on (bound, then closed); Dial would block.
func deadClient(t *testing.T) *Client {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return &Client{conn: conn, Stub: trainerv1.NewTrainerServiceClient(conn)}
}

func noReport(t *testing.T) func(*trainerv1.WatchStepsResponse) error {
	return func(*trainerv1.WatchStepsResponse) error {
		t.Error("nothing listens: no report can come")
		return ErrStop
	}
}

func TestFollowRetriesThenGivesUpWithUnavailable(t *testing.T) {
	c := deadClient(t)
	defer c.Close()
	var reasons []string
	started := time.Now()
	err := c.FollowSteps(context.Background(), 0, FollowOptions{
		RetryInterval: 50 * time.Millisecond,
		GiveUpAfter:   500 * time.Millisecond,
		OnReconnect:   func(r string) { reasons = append(reasons, r) },
	}, noReport(t))
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable {
		t.Fatalf("want an UNAVAILABLE *Error after GiveUpAfter, got %v", err)
	}
	if elapsed := time.Since(started); elapsed < 500*time.Millisecond {
		t.Fatalf("gave up after %s, before GiveUpAfter", elapsed)
	}
	if len(reasons) < 3 || !strings.HasPrefix(reasons[0], "the trainer is unavailable (") {
		t.Fatalf("want a reconnect every 50 ms with its reason, got %q", reasons)
	}
}

func TestFollowEndsWithTheContext(t *testing.T) {
	c := deadClient(t)
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	err := c.FollowSteps(ctx, 0, FollowOptions{RetryInterval: time.Minute, OnReconnect: func(string) { cancel() }}, noReport(t))
	if err != context.Canceled {
		t.Fatalf("want context.Canceled while waiting to reconnect, got %v", err)
	}
}

func TestFollowEndsQuietlyWhenTheClientIsClosed(t *testing.T) {
	c := deadClient(t)
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- c.FollowSteps(context.Background(), 0, FollowOptions{
			RetryInterval: 20 * time.Millisecond,
			OnReconnect:   func(string) { once.Do(func() { c.Close() }) },
		}, noReport(t))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("want nil once the client is closed, got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FollowSteps did not end after Close")
	}
}
