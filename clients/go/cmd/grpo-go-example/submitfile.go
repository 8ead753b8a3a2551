package main

// submit-file: a prompt file (JSON Lines, DESIGN.md section 6) sent with grpoclient.SubmitFile, reported
// as the Python CLI's `grpo submit` reports it.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"github.com/grpo-service/grpo/clients/go/grpoclient"
	"google.golang.org/grpc/codes"
)

type fileCommand struct {
	file      *grpoclient.PromptFile
	batchSize int
	requestID string
	json      bool
	dryRun    bool
}

// parseSubmitFile parses submit-file's flags and reads the whole file; nil and an exit status when
// either is bad (2: the flags or the file, 1: a file that cannot be read; the problems reported as `grpo`
// reports them, with -json as its error document).
func parseSubmitFile(args []string) (*fileCommand, int) {
	fs := flag.NewFlagSet("submit-file", flag.ContinueOnError)
	batchSize := fs.Int("batch-size", 256, "prompts per SubmitPrompts request")
	requestID := fs.String("request-id", "", "name the batches ID-0, ID-1, ... (default: derived from their content)")
	asJSON := fs.Bool("json", false, "print the result as one JSON document")
	dryRun := fs.Bool("dry-run", false, "print the batches and their request ids without connecting")
	if err := fs.Parse(args); err != nil {
		return nil, parseStatus(err, args)
	}
	if fs.NArg() != 1 {
		return nil, usageLine(*asJSON, "submit-file: give one prompt file (JSON Lines)")
	}
	if *batchSize < 1 {
		return nil, usageLine(*asJSON, "submit-file: -batch-size must be >= 1, got %d", *batchSize)
	}
	f, status := loadPromptFile(fs.Arg(0), *asJSON)
	if f == nil {
		return nil, status
	}
	return &fileCommand{file: f, batchSize: *batchSize, requestID: *requestID, json: *asJSON, dryRun: *dryRun}, 0
}

// printPlan prints "batch I: N prompts (lines A-B): REQUEST_ID" for each batch the file makes before the
// trainer names any limit (the batches a first submission sends).
func (c *fileCommand) printPlan() int {
	prompts := c.file.Prompts
	for i, start := 0, 0; start < len(prompts); i++ {
		end := start + c.batchSize
		if end > len(prompts) {
			end = len(prompts)
		}
		rid := grpoclient.BatchRequestID(prompts[start:end], i, c.requestID)
		fmt.Printf("batch %d: %s (%s): %s\n", i+1, grpoclient.Counted(end-start, "prompt"),
			grpoclient.Span("line", c.file.Lines[start], c.file.Lines[end-1]), rid)
		start = end
	}
	return 0
}

// printEmpty reports a file without prompts as `grpo submit` does: nothing is sent, so there is no queue
// depth (null in -json), and no trainer is needed.
func (c *fileCommand) printEmpty() int {
	if c.json {
		printSubmitDocument(submitDocument{AcceptedIDs: []string{}, RequestIDs: []string{}, Resized: []string{},
			ReplayedIDs: []string{}})
		return 0
	}
	fmt.Printf("%s holds no prompts: nothing submitted\n", c.file.Source)
	return 0
}

func (c *fileCommand) submit(ctx context.Context, client *grpoclient.Client, timeout time.Duration) int {
	total, sent := len(c.file.Prompts), 0
	var accepted []string // what the trainer accepted, for Ctrl-C's report
	res, err := client.SubmitPromptFile(ctx, c.file, grpoclient.SubmitOptions{
		BatchSize: c.batchSize, RequestID: c.requestID, CallTimeout: timeout,
		OnBatch: func(n int, response *trainerv1.SubmitPromptsResponse) {
			accepted = append(accepted, response.GetAcceptedIds()...)
			sent += n
			if !c.json {
				fmt.Fprintf(os.Stderr, "submit: %d/%d prompts\n", sent, total)
			}
		},
		MaxAttempts: submitAttempts,
		OnRetry:     func(e *grpoclient.Error, wait time.Duration, attempt int) { printRetry(os.Stderr, e, wait, attempt) },
	})
	if err != nil && interrupted.Load() {
		return interruptedSubmit(c.json, accepted, total)
	}
	if err != nil {
		return callFailure(c.json, err)
	}
	if c.json {
		depth := res.QueueDepth
		printSubmitDocument(submitDocument{AcceptedIDs: nonNil(res.AcceptedIDs), QueueDepth: &depth,
			Batches: res.Batches, DuplicateBatches: res.DuplicateBatches, RequestIDs: nonNil(res.RequestIDs),
			Resized: nonNil(res.Resized), ReplayedIDs: nonNil(res.ReplayedIDs)})
	}
	for _, note := range res.Resized {
		fmt.Fprintf(os.Stderr, "note: %s\n", note)
	}
	if c.json {
		return 0
	}
	n, dup := len(res.QueuedIDs()), res.DuplicateBatches
	batches, replayed := grpoclient.Counted(res.Batches, "batch"), grpoclient.Counted(len(res.ReplayedIDs), "prompt")
	switch {
	case dup > 0 && dup == res.Batches:
		which := "all " + batches
		if dup == 1 { // not "all 1 batch"
			which = "the batch"
		}
		fmt.Printf("nothing queued: %s (%s) had been submitted before under the same request ids, "+
			"and the trainer answered with its first answers. To queue these prompts again (after they were trained, "+
			"failed or cancelled), give -request-id a new value.\n", which, replayed)
	case dup > 0:
		fmt.Printf("submitted %s in %s (%d of them, %s, already submitted before: not queued "+
			"again); queue depth %d\n", grpoclient.Counted(n, "new prompt"), batches, dup, replayed, res.QueueDepth)
	default:
		fmt.Printf("submitted %s in %s; queue depth %d\n", grpoclient.Counted(n, "prompt"), batches, res.QueueDepth)
	}
	return 0
}

// submitDocument is the -json document of submit-file, its keys in the order `grpo --json submit` prints
// them. QueueDepth is nil (null) when nothing was sent.
type submitDocument struct {
	AcceptedIDs      []string `json:"accepted_ids"`
	QueueDepth       *int64   `json:"queue_depth"`
	Batches          int      `json:"batches"`
	DuplicateBatches int      `json:"duplicate_batches"`
	RequestIDs       []string `json:"request_ids"`
	Resized          []string `json:"resized"`
	ReplayedIDs      []string `json:"replayed_ids"`
}

func printSubmitDocument(doc submitDocument) {
	out, _ := json.MarshalIndent(doc, "", "  ")
	fmt.Println(string(out))
}

// submitAttempts: the tries of a batch the trainer refuses as full or unavailable (1 + 2 + 4 + 8 s apart
// without a RetryInfo delay), as `grpo submit` makes.
const submitAttempts = 5

// printRetry says, as `grpo submit` does, that a refused batch is sent again and when: a wait must not
// look like a hang. The reason is the trainer's own (its status message, on one line and at most 200
// characters) when it gave one, else what the code means.
func printRetry(w io.Writer, e *grpoclient.Error, wait time.Duration, attempt int) {
	why := grpoclient.ShortReason(e.Message)
	switch {
	case why != "":
	case e.Code == codes.ResourceExhausted:
		why = "its queue is full"
	default:
		why = "it is unavailable"
	}
	fmt.Fprintf(w, "the trainer refused a batch (%s: %s); sending it again in %s s (retry %d of %d)\n",
		grpoclient.CodeName(e.Code), why, strconv.FormatFloat(wait.Seconds(), 'g', 6, 64), attempt, submitAttempts-1)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// loadPromptFile reads a whole prompt file, or reports why it cannot as `grpo` does and returns the exit
// status: 2 for a bad file (every problem listed; with -json INVALID_ARGUMENT, each problem a field
// violation "line N: field"), 1 for one that cannot be read (LOCAL).
func loadPromptFile(path string, asJSON bool) (*grpoclient.PromptFile, int) {
	f, err := grpoclient.LoadPromptFile(path)
	var bad *grpoclient.PromptFileError
	if errors.As(err, &bad) {
		doc := errorDoc{Code: "INVALID_ARGUMENT", Message: "bad prompt file " + bad.Source}
		for _, p := range bad.Errors {
			field := fmt.Sprintf("line %d", p.Line)
			if p.Field != "" {
				field += ": " + p.Field
			}
			doc.FieldViolations = append(doc.FieldViolations, violationDoc{Field: field, Description: p.Message})
		}
		return nil, fail(asJSON, doc, fmt.Sprintf("error: bad prompt file\n%s", bad), exitInvalid)
	}
	if err != nil {
		return nil, fail(asJSON, errorDoc{Code: "LOCAL", Message: err.Error()}, "error: "+err.Error(), exitFailure)
	}
	return f, 0
}
