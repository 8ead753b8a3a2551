package main

import (
	"bytes"
	"io/ioutil"
	"net"
	"path/filepath"
	"testing"
	"time"

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

// Each retry of a refused batch is announced in the Python CLI's words.
func TestPrintRetryShowsTheWaitAsThePythonCLIDoes(t *testing.T) {
	var buf bytes.Buffer
	full := &grpoclient.Error{Code: codes.ResourceExhausted, Message: "the prompt queue is full"}
	printRetry(&buf, full, time.Second, 1)
	printRetry(&buf, &grpoclient.Error{Code: codes.Unavailable}, 2500*time.Millisecond, 4)
	want := "the trainer refused a batch (RESOURCE_EXHAUSTED: its queue is full); sending it again in 1 s (retry 1 of 4)\n" +
		"the trainer refused a batch (UNAVAILABLE: it is unavailable); sending it again in 2.5 s (retry 4 of 4)\n"
	if buf.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
