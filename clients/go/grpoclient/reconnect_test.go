package grpoclient

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/grpc"
)

// A trainer that went away is tried again at least every MaxReconnectBackoff (plus grpc-go's 20% jitter),
// not at grpc-go's default spacing that grows to 2 minutes (about 10 s apart after 16 s down, 17 s after
// 27 s): the listener standing in for the trainer's port accepts each attempt and closes it at once.
func TestAConnectionLostForLongIsTriedAgainAtLeastEveryFewSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("watches reconnection attempts for 30 s")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	server := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(server, &trainerv1.UnimplementedTrainerServiceServer{})
	go server.Serve(lis)
	c, err := Dial(context.Background(), addr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	server.Stop() // the trainer goes away

	var down net.Listener
	for i := 0; i < 50; i++ { // the port is free again once the server's listener has closed
		if down, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("could not listen on %s again: %v", addr, err)
	}
	var mu sync.Mutex
	var attempts []time.Time
	go func() {
		for {
			conn, err := down.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			conn.Close()
		}
	}()
	start := time.Now()
	time.Sleep(30 * time.Second)
	down.Close()

	mu.Lock()
	defer mu.Unlock()
	points := append([]time.Time{start}, attempts...)
	longest := time.Duration(0)
	for i := 1; i < len(points); i++ {
		if gap := points[i].Sub(points[i-1]); gap > longest {
			longest = gap
		}
	}
	if end := time.Since(points[len(points)-1]); end > longest {
		longest = end
	}
	if limit := MaxReconnectBackoff*6/5 + time.Second; longest > limit {
		t.Fatalf("%d attempts in 30 s, the longest wait between two %v (at most %v expected)", len(attempts), longest, limit)
	}
}
