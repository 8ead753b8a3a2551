package main

import (
	"bytes"
	"flag"
	"io/ioutil"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang/protobuf/proto"
	"github.com/golang/protobuf/ptypes"
	"github.com/golang/protobuf/ptypes/timestamp"
	rewardv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/reward/v1"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"github.com/grpo-service/grpo/clients/go/grpoclient"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// trainerAddr serves a TrainerService that implements nothing, so that run can dial before it parses
// the command's flags.
func trainerAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(s, &trainerv1.UnimplementedTrainerServiceServer{})
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func TestBadFlagsExitTwoAndHelpExitsZero(t *testing.T) {
	addr := trainerAddr(t)
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, 0},
		{[]string{"-nope"}, 2},
		{[]string{"-target", addr}, 2},
		{[]string{"-target", addr, "bogus"}, 2},
		{[]string{"-target", addr, "status", "-h"}, 0},
		{[]string{"-target", addr, "status", "-x"}, 2},
		{[]string{"-target", addr, "submit", "-answer"}, 2},
		{[]string{"-target", addr, "watch", "-n", "many"}, 2},
		{[]string{"-target", addr, "follow", "-retry", "soon"}, 2},
		// as `grpo --timeout 0`: every call's deadline would have passed (0 was 30 s for submit-file only)
		{[]string{"-target", addr, "-timeout", "0", "status"}, 2},
		{[]string{"-target", addr, "-timeout", "-1s", "status"}, 2},
		// A call the trainer refuses is exit status 1.
		{[]string{"-target", addr, "status"}, 1},
	}
	for _, c := range cases {
		if got := run(c.args); got != c.want {
			t.Errorf("grpo-go-example %v: exit status %d, want %d", c.args, got, c.want)
		}
	}
}

// A trainer that never answers the connection (a listener that accepts and says nothing): Dial must give
// up after -timeout, not after a fixed 10 s.
func TestDialGivesUpAfterTheTimeoutFlag(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	if got := run([]string{"-target", l.Addr().String(), "-timeout", "500ms", "status"}); got != 1 {
		t.Fatalf("exit status %d, want 1", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("gave up after %v with -timeout 500ms", took)
	}
}

func TestPrintErrorShowsPreconditionsAsThePythonCLIDoes(t *testing.T) {
	st, err := status.New(codes.FailedPrecondition, "destination is not empty").WithDetails(
		&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
			{Type: "DESTINATION_NOT_EMPTY", Subject: "/tmp/x", Description: "holds files"}}})
	if err != nil {
		t.Fatal(err)
	}
	e := &grpoclient.Error{Method: "ExportCheckpoint", Code: st.Code(), Message: st.Message(), Details: st.Details(),
		Preconditions: []string{"DESTINATION_NOT_EMPTY"}}
	var b bytes.Buffer
	printErrorTo(&b, e)
	want := "FAILED_PRECONDITION: destination is not empty\n  precondition: DESTINATION_NOT_EMPTY\n"
	if b.String() != want {
		t.Fatalf("printed %q, want %q", b.String(), want)
	}
}

// The retry delay is printed as `grpo` prints it ("2.5 s", and "0 s" for a RetryInfo of no delay, which
// went unprinted), and a detail neither client decodes by its type name (it was left out).
func TestPrintErrorShowsTheRetryDelayAndOtherDetailsAsThePythonCLIDoes(t *testing.T) {
	for _, c := range []struct {
		delay time.Duration
		want  string
	}{
		{2500 * time.Millisecond, "UNAVAILABLE: down\n  retry after 2.5 s\n  google.rpc.DebugInfo\n"},
		{0, "UNAVAILABLE: down\n  retry after 0 s\n  google.rpc.DebugInfo\n"},
	} {
		e := &grpoclient.Error{Method: "StepStatus", Code: codes.Unavailable, Message: "down", RetryDelay: c.delay,
			Details: []interface{}{&errdetails.RetryInfo{RetryDelay: ptypes.DurationProto(c.delay)},
				&errdetails.DebugInfo{Detail: "stack"}}}
		var b bytes.Buffer
		printErrorTo(&b, e)
		if b.String() != c.want {
			t.Errorf("printed %q, want %q", b.String(), c.want)
		}
	}
}

// A prompt file without prompts sends nothing, as `grpo submit` does: exit status 0 without a trainer
// (nothing listens on the target), rather than "cannot connect" or a queue depth of 0 from no answer.
func TestSubmitFileOfAnEmptyFileNeedsNoTrainer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := ioutil.WriteFile(path, []byte("\n  \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, json := range []bool{false, true} {
		args := []string{"-target", addr, "-timeout", "1s", "submit-file", path}
		if json {
			args = []string{"-target", addr, "-timeout", "1s", "submit-file", "-json", path}
		}
		if got := run(args); got != 0 {
			t.Errorf("grpo-go-example %v: exit status %d, want 0", args, got)
		}
	}
}

// Each retry of a refused batch is announced in the Python CLI's words: the trainer's own reason when it
// gave one (a tokenizer still loading, on one line, at most 200 characters), else what the code means.
func TestPrintRetryShowsTheTrainersReasonAndTheWaitAsThePythonCLIDoes(t *testing.T) {
	var buf bytes.Buffer
	printRetry(&buf, &grpoclient.Error{Code: codes.ResourceExhausted}, time.Second, 1)
	printRetry(&buf, &grpoclient.Error{Code: codes.Unavailable}, 2500*time.Millisecond, 4)
	loading := &grpoclient.Error{Code: codes.Unavailable, Message: "the model's tokenizer\n is still loading; retry shortly"}
	printRetry(&buf, loading, 5*time.Second, 1)
	printRetry(&buf, &grpoclient.Error{Code: codes.Unavailable, Message: strings.Repeat("é", 250)}, time.Second, 2)
	want := "the trainer refused a batch (RESOURCE_EXHAUSTED: its queue is full); sending it again in 1 s (retry 1 of 4)\n" +
		"the trainer refused a batch (UNAVAILABLE: it is unavailable); sending it again in 2.5 s (retry 4 of 4)\n" +
		"the trainer refused a batch (UNAVAILABLE: the model's tokenizer is still loading; retry shortly); " +
		"sending it again in 5 s (retry 1 of 4)\n" +
		"the trainer refused a batch (UNAVAILABLE: " + strings.Repeat("é", 197) + "...); sending it again in 1 s (retry 2 of 4)\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}

// backends set, prompts, cancel and exports refuse a bad command line with exit status 2 before connecting (nothing
// listens on the target), as `grpo` refuses it; -h is exit status 0. Flags may follow the arguments.
func TestAdminCommandsRefuseBadCommandLinesBeforeConnecting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"backends", "frob"}, 2},
		{[]string{"backends", "list", "extra"}, 2},
		{[]string{"backends", "set", "math"}, 2},
		{[]string{"backends", "set", "math", "h:1", "extra"}, 2},
		{[]string{"backends", "set", "-timeout", "NaN", "math", "h:1"}, 2},
		{[]string{"backends", "set", "math", "h:1", "--timeout", "-1"}, 2},
		{[]string{"backends", "set", "math", "h:1", "-max-batch", "2147483648"}, 2},
		{[]string{"backends", "set", "math", "h:1", "-max-concurrency", "-1"}, 2},
		{[]string{"backends", "set", "-h"}, 0},
		{[]string{"backends", "delete"}, 2},
		{[]string{"backends", "delete", "a", "b", "-json"}, 2},
		{[]string{"prompts", "-state", "done"}, 2},
		{[]string{"prompts", "a", "--limit", "-1"}, 2},
		{[]string{"prompts", "-limit", "many"}, 2},
		{[]string{"exports", "-state", "queued"}, 2},
		{[]string{"exports", "--limit", "-1", "-json"}, 2},
		{[]string{"exports", "extra"}, 2},
		{[]string{"exports", "-h"}, 0},
		{[]string{"cancel"}, 2},
		{[]string{"cancel", "-file", filepath.Join(t.TempDir(), "missing.jsonl")}, 1},
		{[]string{"cancel", "-h"}, 0},
	}
	for _, c := range cases {
		args := append([]string{"-target", addr, "-timeout", "1s"}, c.args...)
		if got := run(args); got != c.want {
			t.Errorf("grpo-go-example %v: exit status %d, want %d", c.args, got, c.want)
		}
	}
	// A prompt file without prompts cancels nothing, and needs no trainer.
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := ioutil.WriteFile(empty, []byte("\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := run([]string{"-target", addr, "-timeout", "1s", "cancel", "-json", "-file", empty}); got != 0 {
		t.Errorf("cancel -file of an empty file: exit status %d, want 0", got)
	}
}

func TestParseInterspersedTakesFlagsAfterArgumentsUntilDoubleDash(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	n := fs.Int("n", 0, "")
	pos, err := parseInterspersed(fs, []string{"a", "-n", "3", "b", "--", "-c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	if *n != 3 || strings.Join(pos, " ") != "a b -c d" {
		t.Fatalf("n=%d positional %q", *n, pos)
	}
}

// -json prints messages as `grpo --json` does (json_format.MessageToDict): proto field names, int64 as
// strings, RFC 3339 timestamps, unset message fields left out, the set fields first (by number), then
// those at their defaults.
func TestProtoJSONOrdersFieldsAsThePythonCLIDoes(t *testing.T) {
	cases := []struct {
		msg  proto.Message
		want string
	}{
		{&trainerv1.PromptStatus{Id: "a", State: trainerv1.PromptState_PROMPT_STATE_QUEUED,
			SubmittedAt: &timestamp.Timestamp{Seconds: 5, Nanos: 120000000}},
			`{"id":"a","state":"PROMPT_STATE_QUEUED","submitted_at":"1970-01-01T00:00:05.120Z","step":"0",` +
				`"checkpoint_step":"0","attempts":0,"reason":""}`},
		{&trainerv1.CancelPromptsResponse{UnknownIds: []string{"x"}, NotCancelled: []*trainerv1.PromptStatus{}},
			`{"unknown_ids":["x"],"cancelled_ids":[],"not_cancelled":[],"queue_depth":"0"}`},
		{&trainerv1.SetRewardBackendResponse{RegistryVersion: 3, Backend: &trainerv1.RewardBackend{
			Name: "m", Address: "h:1", TimeoutSeconds: 30, MaxConcurrency: 4,
			Source: trainerv1.BackendSource_BACKEND_SOURCE_API, Circuit: trainerv1.CircuitState_CIRCUIT_STATE_CLOSED,
			Description: &rewardv1.DescribeResponse{Name: "x", Version: "1", Capabilities: &rewardv1.Capabilities{
				Feedback: true, MaxBatchSize: 64, ScoreMax: 1,
				ReferenceKinds: []rewardv1.ReferenceKind{rewardv1.ReferenceKind_REFERENCE_KIND_ANSWER}}},
			ReferenceKinds: []rewardv1.ReferenceKind{rewardv1.ReferenceKind_REFERENCE_KIND_ANSWER}}},
			`{"backend":{"name":"m","address":"h:1","timeout_seconds":30,"max_concurrency":4,` +
				`"source":"BACKEND_SOURCE_API","circuit":"CIRCUIT_STATE_CLOSED","description":{"name":"x","version":"1",` +
				`"capabilities":{"feedback":true,"max_batch_size":64,"reference_kinds":["REFERENCE_KIND_ANSWER"],` +
				`"score_max":1,"step_scores":false,"score_min":0}},"reference_kinds":["REFERENCE_KIND_ANSWER"],` +
				`"max_batch_size":0,"tls":false,"token_file":"","ca_file":"","cert_file":"","key_file":""},` +
				`"registry_version":"3"}`},
	}
	for _, c := range cases {
		got, err := protoJSON(c.msg)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("got\n%s\nwant\n%s", got, c.want)
		}
	}
}

// oneStepTrainer streams one finished step to every WatchSteps call, then holds the stream open.
type oneStepTrainer struct {
	trainerv1.UnimplementedTrainerServiceServer
}

func (*oneStepTrainer) WatchSteps(_ *trainerv1.WatchStepsRequest, stream trainerv1.TrainerService_WatchStepsServer) error {
	if err := stream.Send(&trainerv1.WatchStepsResponse{Step: &trainerv1.StepReport{
		Step: 1, State: trainerv1.StepState_STEP_STATE_COMPLETED}}); err != nil {
		return err
	}
	<-stream.Context().Done()
	return nil
}

// follow started before its trainer is up waits for it (-give-up 0: for ever), as `grpo watch --follow`
// does; it exited 1 once -timeout had passed, before its reconnect loop ever ran.
func TestFollowWaitsForATrainerNotUpYet(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there until the trainer comes up
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-target", addr, "-timeout", "300ms", "follow", "-give-up", "0", "-retry", "100ms", "-n", "1"})
	}()
	time.Sleep(time.Second)
	up, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(s, &oneStepTrainer{})
	go s.Serve(up)
	t.Cleanup(s.Stop)
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("follow exited %d, want 0 after the trainer came up", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not get the step of a trainer that came up after it")
	}
}
