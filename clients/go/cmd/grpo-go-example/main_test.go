package main

import (
	"net"
	"testing"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/grpc"
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
