package grpoclient

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang/protobuf/ptypes"
	timestamp "github.com/golang/protobuf/ptypes/timestamp"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
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

// gapped is response with ForgottenThrough set: the server's word that the reports before it were deleted.
func gapped(through int64, r *trainerv1.WatchStepsResponse) *trainerv1.WatchStepsResponse {
	r.ForgottenThrough = through
	return r
}

func TestFollowReportsOnlyGapsPastWhatWasDelivered(t *testing.T) {
	f := newFollowState(2)
	// Retention deleted steps 3-5: the first stream says so on step 6.
	first := gapped(5, response(6, completed, 100, 6))
	admitAll(f, first, response(7, completed, 110, 6), response(8, completed, 120, 6))
	if first.GetForgottenThrough() != 5 {
		t.Fatalf("first stream, after step 2: ForgottenThrough %d, want 5 (steps 3-5 are gone)", first.GetForgottenThrough())
	}
	// The next stream starts after the checkpoint (6) and finds 7 deleted since: the caller has 7 and 8.
	again := gapped(7, response(8, completed, 120, 8))
	if got := admitAll(f, again); len(got) != 0 {
		t.Fatalf("second stream delivered %v, want nothing (step 8 was delivered)", got)
	}
	next := response(9, completed, 130, 8)
	admitAll(f, next)
	if next.GetForgottenThrough() != 0 {
		t.Fatalf("step 9 after a gap the caller did not miss: ForgottenThrough %d, want 0", next.GetForgottenThrough())
	}
	// A gap past the last step delivered is passed on, on the first report delivered after it.
	lost := gapped(12, response(13, completed, 140, 13))
	admitAll(f, lost)
	if lost.GetForgottenThrough() != 12 {
		t.Fatalf("steps 10-12 deleted: ForgottenThrough %d, want 12", lost.GetForgottenThrough())
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

// freeAddr is a loopback "HOST:PORT" nothing listens on (bound, then closed), for a trainer to start on later.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// clientOf is a Client of addr that does not wait for a connection (Dial would block).
func clientOf(t *testing.T, addr string) *Client {
	conn, err := grpc.Dial(addr, grpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return &Client{conn: conn, Stub: trainerv1.NewTrainerServiceClient(conn)}
}

// deadClient is a Client of a loopback port nothing listens on.
func deadClient(t *testing.T) *Client { return clientOf(t, freeAddr(t)) }

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

// fakeTrainer is a TrainerService whose WatchSteps answers as the trainer does: it sends its response
// headers at once, then the reports in sends (none: an idle trainer), then holds the stream open until
// the server stops.
type fakeTrainer struct {
	trainerv1.UnimplementedTrainerServiceServer
	sends  []*trainerv1.WatchStepsResponse
	opened chan struct{} // closed once a stream has sent its headers
	once   sync.Once
}

func newFakeTrainer(sends ...*trainerv1.WatchStepsResponse) *fakeTrainer {
	return &fakeTrainer{sends: sends, opened: make(chan struct{})}
}

func (f *fakeTrainer) WatchSteps(_ *trainerv1.WatchStepsRequest, stream trainerv1.TrainerService_WatchStepsServer) error {
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	f.once.Do(func() { close(f.opened) })
	for _, r := range f.sends {
		if err := stream.Send(r); err != nil {
			return err
		}
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// serveTrainer starts f on addr; Stop the server to take the trainer down.
func serveTrainer(t *testing.T, addr string, f *fakeTrainer) *grpc.Server {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	s := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(s, f)
	go s.Serve(l)
	return s
}

// reconnectLog records FollowSteps' OnReconnect calls, which come from its goroutine.
type reconnectLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (l *reconnectLog) add(string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times = append(l.times, time.Now())
}

// since counts the reconnects at or after t.
func (l *reconnectLog) since(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.times {
		if !at.Before(t) {
			n++
		}
	}
	return n
}

// waitFor polls cond every 10 ms for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

const (
	idleRetry  = 50 * time.Millisecond
	idleGiveUp = time.Second
)

// followAcrossAnIdleStream runs FollowSteps (idleRetry, idleGiveUp) through a trainer that is down at
// first, then answers a stream, stays idle longer than idleGiveUp and stops: the case where counting
// from the last report gave up at once. It returns the trainer's address, FollowSteps' result channel,
// its reconnects and the time the trainer stopped.
func followAcrossAnIdleStream(t *testing.T, fn func(*trainerv1.WatchStepsResponse) error) (string, chan error, *reconnectLog, time.Time) {
	addr := freeAddr(t)
	c := clientOf(t, addr)
	t.Cleanup(func() { c.Close() })
	log := &reconnectLog{}
	done := make(chan error, 1)
	go func() {
		done <- c.FollowSteps(context.Background(), 0, FollowOptions{RetryInterval: idleRetry, GiveUpAfter: idleGiveUp, OnReconnect: log.add}, fn)
	}()
	waitFor(t, "a reconnect while the trainer is down", func() bool { return log.since(time.Time{}) > 0 })

	trainer := newFakeTrainer()
	server := serveTrainer(t, addr, trainer)
	select {
	case <-trainer.opened:
	case <-time.After(5 * time.Second):
		server.Stop()
		t.Fatal("FollowSteps did not open a stream on the started trainer")
	}
	time.Sleep(idleGiveUp + idleGiveUp/2) // idle, with the stream open: no report, no reconnect
	select {
	case err := <-done:
		server.Stop()
		t.Fatalf("FollowSteps returned %v while the stream was open", err)
	default:
	}
	stopped := time.Now() // before Stop: FollowSteps may see the stream fail before Stop returns
	server.Stop()
	return addr, done, log, stopped
}

func TestFollowCountsTheGiveUpTimeFromTheTrainersLastAnswerNotItsLastReport(t *testing.T) {
	_, done, log, stopped := followAcrossAnIdleStream(t, noReport(t))
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("FollowSteps did not give up")
	}
	elapsed := time.Since(stopped)
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable {
		t.Fatalf("want an UNAVAILABLE *Error after GiveUpAfter, got %v", err)
	}
	if elapsed < idleGiveUp {
		t.Fatalf("gave up %s after the idle trainer stopped, before GiveUpAfter (%s): the open stream was its answer", elapsed, idleGiveUp)
	}
	if n := log.since(stopped); n < 5 {
		t.Fatalf("want a reconnect every %s after the trainer stopped, got %d", idleRetry, n)
	}
}

func TestFollowReconnectsToATrainerRestartedAfterAnIdleStream(t *testing.T) {
	delivered := make(chan int64, 1)
	addr, done, log, stopped := followAcrossAnIdleStream(t, func(r *trainerv1.WatchStepsResponse) error {
		delivered <- r.GetStep().GetStep()
		return ErrStop
	})
	time.Sleep(idleGiveUp / 2)
	select {
	case err := <-done:
		t.Fatalf("FollowSteps returned %v %s after the trainer stopped, before GiveUpAfter (%s)", err, time.Since(stopped), idleGiveUp)
	default:
	}
	server := serveTrainer(t, addr, newFakeTrainer(response(1, completed, 100, 1)))
	defer server.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("want nil (fn returned ErrStop on the restarted trainer's report), got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowSteps did not reconnect to the restarted trainer")
	}
	if step := <-delivered; step != 1 {
		t.Fatalf("delivered step %d, want 1", step)
	}
	if log.since(stopped) == 0 {
		t.Fatal("want OnReconnect called after the trainer stopped")
	}
}

// busyTrainer refuses its first `refusals` streams as the trainer does at limits.max_watch_streams
// (RESOURCE_EXHAUSTED with a RetryInfo delay), then sends one report.
type busyTrainer struct {
	trainerv1.UnimplementedTrainerServiceServer
	mu       sync.Mutex
	refusals int
	delay    time.Duration
}

func (b *busyTrainer) WatchSteps(_ *trainerv1.WatchStepsRequest, stream trainerv1.TrainerService_WatchStepsServer) error {
	b.mu.Lock()
	refuse := b.refusals > 0
	b.refusals--
	b.mu.Unlock()
	if refuse {
		st, err := status.New(codes.ResourceExhausted, "48 WatchSteps streams are open").WithDetails(
			&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(b.delay)})
		if err != nil {
			return err
		}
		return st.Err()
	}
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	if err := stream.Send(response(1, completed, 10, 0)); err != nil {
		return err
	}
	<-stream.Context().Done()
	return stream.Context().Err()
}

func TestFollowWaitsTheRetryDelayOfATrainerWithNoRoomForAnotherStream(t *testing.T) {
	addr := freeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(s, &busyTrainer{refusals: 2, delay: 300 * time.Millisecond})
	go s.Serve(l)
	defer s.Stop()
	c := clientOf(t, addr)
	defer c.Close()
	log := &reconnectLog{}
	started := time.Now()
	var got int64
	// GiveUpAfter shorter than the two delays: a busy trainer has answered, so it is never given up on.
	err = c.FollowSteps(context.Background(), 0, FollowOptions{RetryInterval: 10 * time.Millisecond,
		GiveUpAfter: 100 * time.Millisecond, OnReconnect: log.add}, func(r *trainerv1.WatchStepsResponse) error {
		got = r.GetStep().GetStep()
		return ErrStop
	})
	if err != nil || got != 1 {
		t.Fatalf("want step 1 after the trainer made room, got step %d, err %v", got, err)
	}
	if n := log.since(started); n != 2 {
		t.Fatalf("want 2 reconnects (one per refusal), got %d", n)
	}
	if elapsed := time.Since(started); elapsed < 600*time.Millisecond {
		t.Fatalf("the refusals' retry delays (2 x 300 ms) were not waited: %s", elapsed)
	}
}

func TestDialNamesWhyItCouldNotConnect(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	start := time.Now()
	_, err := Dial(context.Background(), addr, Options{DialTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("Dial to a port nothing listens on succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Dial took %s, past its 500ms DialTimeout", time.Since(start))
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Dial error %q does not say the connection was refused", err)
	}
}

// lost is the report of a run of step that a restart turned FAILED.
func lost(step, startedAt, checkpoint int64) *trainerv1.WatchStepsResponse {
	r := response(step, failed, startedAt, checkpoint)
	r.Step.Error = "lost: the trainer stopped before a checkpoint contained this step; its prompts went back"
	return r
}

func TestFollowDoesNotRepeatWhatTheCallerHadBeforeFollowing(t *testing.T) {
	f := newFollowState(10) // the caller has the reports up to step 10
	if got := admitAll(f, response(11, completed, 200, 8)); !equalSteps(got, []int64{11}) {
		t.Fatalf("first stream: delivered %v, want [11]", got)
	}
	// A dropped connection, no restart: the stream resumes at the checkpoint and sends 9 and 10 unchanged.
	got := admitAll(f, response(9, completed, 180, 8), response(10, completed, 190, 8),
		response(11, completed, 200, 8), response(12, completed, 210, 8))
	if !equalSteps(got, []int64{12}) {
		t.Fatalf("resumed stream: delivered %v, want [12]", got)
	}
}

func TestFollowReportsAgainWhatARestartDuringTheFollowRunsAgain(t *testing.T) {
	f := newFollowState(10)
	admitAll(f, response(11, completed, 200, 8))
	got := admitAll(f, lost(9, 180, 8), lost(10, 190, 8), lost(11, 200, 8), response(9, completed, 300, 8),
		response(10, completed, 310, 8), response(11, completed, 320, 8))
	if !equalSteps(got, []int64{9, 10, 11, 9, 10, 11}) {
		t.Fatalf("after a restart from checkpoint 8: delivered %v, want [9 10 11 9 10 11]", got)
	}
}

// proxyTrainer answers every stream as a proxy in front of a trainer that is down does: UNAVAILABLE in a
// trailers-only response (no headers first).
type proxyTrainer struct {
	trainerv1.UnimplementedTrainerServiceServer
}

func (*proxyTrainer) WatchSteps(*trainerv1.WatchStepsRequest, trainerv1.TrainerService_WatchStepsServer) error {
	return status.Error(codes.Unavailable, "upstream connect error or disconnect/reset before headers")
}

func TestFollowGivesUpOnAProxyThatAnswersForATrainerThatIsDown(t *testing.T) {
	addr := freeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(s, &proxyTrainer{})
	go s.Serve(l)
	defer s.Stop()
	c := clientOf(t, addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	started := time.Now()
	err = c.FollowSteps(ctx, 0, FollowOptions{RetryInterval: 50 * time.Millisecond, GiveUpAfter: time.Second},
		func(*trainerv1.WatchStepsResponse) error { return nil })
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("want UNAVAILABLE after the give-up time, got %v after %s", err, time.Since(started))
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Fatalf("gave up after %s, want about 1 s", elapsed)
	}
}
