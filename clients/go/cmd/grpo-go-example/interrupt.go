package main

// Ctrl-C (SIGINT) as `grpo` takes it: during a call or a wait (from the connection on) it ends the
// command with the INTERRUPTED error, exit status 130, instead of killing the process: with -json the
// document {"error": {"code": "INTERRUPTED", "message": "interrupted"}} on stdout, else "interrupted" on
// stderr. submit-file says what the trainer had accepted (interruptedSubmit). watch and follow end on it
// as the usual way to stop (exit status 0), as `grpo watch` does. A second Ctrl-C kills the process.

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"

	"github.com/grpo-service/grpo/clients/go/grpoclient"
)

// exitInterrupted is the exit status of a command Ctrl-C ended, as of a process killed by SIGINT.
const exitInterrupted = 128 + 2

// interrupted is set by the first SIGINT after catchInterrupt, before the context it returns ends: a call
// that fails once it is set failed because of it.
var interrupted atomic.Bool

// catchInterrupt returns ctx ended by the first SIGINT (which sets interrupted; a second one kills the
// process as usual) and a function that stops catching it.
func catchInterrupt(ctx context.Context) (context.Context, func()) {
	interrupted.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			signal.Stop(sigs)
			interrupted.Store(true)
			cancel()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}

// interruptedFailure reports Ctrl-C as `grpo` does and returns exit status 130.
func interruptedFailure(asJSON bool) int {
	return fail(asJSON, errorDoc{Code: "INTERRUPTED", Message: "interrupted"}, "interrupted", exitInterrupted)
}

// interruptedSubmitDoc is `grpo submit`'s INTERRUPTED error: what the trainer had accepted.
type interruptedSubmitDoc struct {
	Code        string   `json:"code"`
	Message     string   `json:"message"`
	AcceptedIDs []string `json:"accepted_ids"`
}

// interruptedSubmit reports Ctrl-C during submit-file as `grpo submit` does: the prompts the trainer had
// accepted (accepted, of total) and how to carry on; exit status 130.
func interruptedSubmit(asJSON bool, accepted []string, total int) int {
	message := fmt.Sprintf("interrupted: the trainer had accepted %d of the %s; the batch in flight may or "+
		"may not have been queued. To carry on, run the same command again (same batch size and request id): the "+
		"trainer answers the batches it already accepted as duplicates, by their request ids, and queues nothing "+
		"twice.", len(accepted), grpoclient.Counted(total, "prompt"))
	return fail(asJSON, interruptedSubmitDoc{Code: "INTERRUPTED", Message: message, AcceptedIDs: nonNil(accepted)},
		message, exitInterrupted)
}
