// Command grpo-go-example calls a GRPO trainer with the grpoclient package.
//
//	grpo-go-example -target HOST:PORT [-token T] [-tls] [-ca FILE] [-cert FILE -key FILE] [-server-name NAME]
//	    [-timeout D] COMMAND ...
//	grpo-go-example -target HOST:PORT [-token T] submit [-bad] [-answer A] [QUESTION]
//	grpo-go-example -target HOST:PORT [-token T] submit-file [-batch-size N] [-request-id ID] [-json] [-dry-run] FILE.jsonl
//	grpo-go-example -target HOST:PORT [-token T] status [-step N]
//	grpo-go-example -target HOST:PORT [-token T] watch [-after N] [-n COUNT]
//	grpo-go-example -target HOST:PORT [-token T] follow [-after N] [-running] [-retry D] [-give-up D] [-n COUNT]
//	grpo-go-example -target HOST:PORT [-token T] backends [list]
//	grpo-go-example -target HOST:PORT [-token T] backends set NAME HOST:PORT [-timeout S] [-max-batch N]
//	    [-max-concurrency N] [-backend-tls] [-backend-token-file P] [-backend-ca-file P] [-backend-cert-file P]
//	    [-backend-key-file P] [-json]
//	grpo-go-example -target HOST:PORT [-token T] backends delete NAME [-json]
//	grpo-go-example -target HOST:PORT [-token T] prompts [ID ...] [-state STATE] [-limit N] [-json]
//	grpo-go-example -target HOST:PORT [-token T] cancel [ID ...] [-file FILE.jsonl] [-json]
//	grpo-go-example -target HOST:PORT [-token T] exports [-state STATE] [-limit N] [-json]
//
// Failures are reported and exit as the Python CLI (`grpo`) reports them: a failed call prints the gRPC
// code, the message and each field violation on stderr; a prompt file with problems prints each
// (FILE:LINE: field: message) before connecting. Exit status 2 for a bad command line, a bad prompt file
// and a call refused with INVALID_ARGUMENT, 1 for any other failure, 130 for Ctrl-C during a call or a
// wait (INTERRUPTED; watch and follow end on it with exit status 0: see interrupt.go). With -json
// (submit-file, backends set and delete, prompts, cancel, exports) a failure is instead the one JSON document
// {"error": {...}} on stdout, as `grpo --json` prints it (USAGE, LOCAL, a bad prompt file as
// INVALID_ARGUMENT with "line N: field" violations, INTERRUPTED, or the call's status: see grpoclient's
// Error.MarshalJSON); a bad command line still prints its text on stderr too.
// The TLS flags are `grpo`'s --tls, --ca, --cert, --key and --server-name (see tlsflags.go): -ca, -cert
// (with -key) and -server-name each imply -tls, and their files are checked before any call, in `grpo`'s
// words and exit statuses (a file that cannot be read: LOCAL, 1; a file without the PEM block it should
// hold, an encrypted key, -cert without -key or the other way round: USAGE, 2).
// backends set/delete, prompts, cancel and exports are the Python CLI's commands of those names (same
// flags, lines and -json documents; see admin.go), and cancel exits 1 when an id was not cancelled (not
// queued, or unknown to the trainer).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	rewardv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/reward/v1"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"github.com/grpo-service/grpo/clients/go/grpoclient"
	"google.golang.org/grpc/codes"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: grpo-go-example -target HOST:PORT [-token T] [-tls] [-ca FILE] [-cert FILE -key FILE] [-server-name NAME] [-timeout D] submit|submit-file|status|watch|follow|backends [list|set|delete]|prompts|cancel|exports [flags]")
}

// commands are the commands run takes.
var commands = []string{"submit", "submit-file", "status", "watch", "follow", "backends", "prompts", "cancel", "exports"}

// Exit statuses, as the Python CLI's.
const (
	exitFailure = 1 // a failed call (other than INVALID_ARGUMENT), a file that cannot be read
	exitInvalid = 2 // a bad command line or prompt file, a call refused with INVALID_ARGUMENT
)

func run(args []string) int {
	global := flag.NewFlagSet("grpo-go-example", flag.ContinueOnError)
	target := global.String("target", "127.0.0.1:50051", "trainer address HOST:PORT")
	token := global.String("token", "", "bearer token")
	tlsOpts := addTLSFlags(global)
	timeout := global.Duration("timeout", 30*time.Second, "deadline of each call")
	global.Usage = usage
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h: usage printed
		}
		return usageFailure(wantsJSON(args), err.Error(), true)
	}
	if *timeout <= 0 { // as `grpo --timeout`: every call's deadline would have passed before it was sent
		return usageFailure(wantsJSON(global.Args()), fmt.Sprintf("-timeout: %v is not a duration > 0", *timeout), false)
	}
	// -json belongs to the command; a failure before the command has parsed it answers -json anywhere
	// after the global flags, as `grpo` answers --json anywhere in a command line it refuses.
	asJSON := wantsJSON(global.Args())
	if global.NArg() == 0 {
		usage()
		return usageFailure(asJSON, "give a command: "+strings.Join(commands, ", "), false)
	}
	cmd, rest := global.Arg(0), global.Args()[1:]
	if !contains(commands, cmd) {
		usage()
		return usageFailure(asJSON, fmt.Sprintf("%q is not a command; give one of %s", cmd, strings.Join(commands, ", ")), false)
	}
	opts := grpoclient.Options{Token: *token}
	if err := grpoclient.CheckToken(*token); err != nil {
		return usageFailure(asJSON, "-token: "+err.Error(), false)
	}
	cfg, err := tlsOpts.config(global)
	var tlsErr *tlsFlagError
	if errors.As(err, &tlsErr) && tlsErr.local {
		return fail(asJSON, errorDoc{Code: "LOCAL", Message: tlsErr.msg}, "error: "+tlsErr.msg, exitFailure)
	} else if err != nil {
		return usageFailure(asJSON, err.Error(), false)
	}
	opts.TLS = cfg

	ctx := context.Background()
	var file *fileCommand
	if cmd == "submit-file" {
		// The flags and the whole file first: a bad file sends nothing and needs no trainer.
		var code int
		if file, code = parseSubmitFile(rest); file == nil {
			return code
		}
		if file.dryRun {
			return file.printPlan()
		}
		if len(file.file.Prompts) == 0 {
			return file.printEmpty()
		}
	}
	// backends set, prompts, cancel and exports: their flags (and cancel's -file) first, as `grpo` checks them.
	admin, code := parseAdmin(cmd, rest)
	if code >= 0 {
		return code
	}
	// From here on Ctrl-C ends a call or a wait as `grpo` reports it (interrupt.go).
	ctx, stopCatching := catchInterrupt(ctx)
	defer stopCatching()
	stopsOnInterrupt := cmd == "watch" || cmd == "follow" // as `grpo watch`: Ctrl-C is how it ends (exit 0)
	// -timeout bounds the wait for the connection too (it was a fixed 10 s).
	opts.DialTimeout = *timeout
	client, err := grpoclient.Dial(ctx, *target, opts)
	var handshake *grpoclient.HandshakeError
	if err != nil && cmd == "follow" && !interrupted.Load() && !errors.As(err, &handshake) {
		// A trainer not up yet: follow waits for it as it waits through a restart (-give-up), as `grpo watch
		// --follow` does; it exited 1 after -timeout, even with -give-up 0.
		opts.NoWait = true
		client, err = grpoclient.Dial(ctx, *target, opts)
	}
	if err != nil && interrupted.Load() {
		if stopsOnInterrupt {
			return 0
		}
		return interruptedFailure(asJSON)
	}
	if err != nil {
		// What `grpo` reports for a trainer it cannot reach: UNAVAILABLE (it fails the call, Dial gives up
		// on the connection).
		msg := fmt.Sprintf("cannot connect to %s: %v", *target, err)
		return fail(asJSON, errorDoc{Code: "UNAVAILABLE", Message: msg}, msg, exitFailure)
	}
	defer client.Close()

	if admin != nil {
		return admin.run(ctx, client, *timeout)
	}
	switch cmd {
	case "submit-file":
		return file.submit(ctx, client, *timeout)
	case "submit":
		err = submit(ctx, client, *timeout, rest)
	case "status":
		err = stepStatus(ctx, client, *timeout, rest)
	case "watch":
		err = watch(ctx, client, rest)
	case "follow":
		err = follow(ctx, client, rest)
	case "backends":
		err = backends(ctx, client, *timeout)
	}
	var bad usageError
	if errors.As(err, &bad) {
		// The flag package has printed the problem and the command's flags already.
		if errors.Is(bad.err, flag.ErrHelp) {
			return 0
		}
		return usageFailure(asJSON, bad.err.Error(), true)
	}
	if err != nil && stopsOnInterrupt && interrupted.Load() {
		return 0
	}
	if err != nil {
		return callFailure(false, err) // these commands print no JSON
	}
	return 0
}

// wantsJSON is whether args ask for -json (-json, --json, -json=true, ... before any "--"), as `grpo`
// looks for --json in a command line it refuses.
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch {
		case a == "--":
			return false
		case a == "-json" || a == "--json":
			return true
		case strings.HasPrefix(a, "-json=") || strings.HasPrefix(a, "--json="):
			if on, err := strconv.ParseBool(a[strings.Index(a, "=")+1:]); err == nil && on {
				return true
			}
		}
	}
	return false
}

// errorDoc is the "error" document of a failure found before any call, as `grpo --json` prints it: code
// USAGE (a bad command line), LOCAL (a local file that cannot be read), INVALID_ARGUMENT (a bad prompt
// file: each problem a field violation "line N: field") or UNAVAILABLE (no connection).
type errorDoc struct {
	Code            string         `json:"code"`
	Message         string         `json:"message"`
	FieldViolations []violationDoc `json:"field_violations,omitempty"`
}

type violationDoc struct {
	Field       string `json:"field"`
	Description string `json:"description"`
}

// fail reports a failure as `grpo` does and returns status: with -json the one document {"error": doc}
// on stdout, else text (one or more lines) on stderr.
func fail(asJSON bool, doc interface{}, text string, status int) int {
	if !asJSON {
		fmt.Fprintln(os.Stderr, text)
		return status
	}
	if printJSON(struct {
		Error interface{} `json:"error"`
	}{doc}) != 0 {
		return exitFailure
	}
	return status
}

// usageFailure reports a bad command line as `grpo` does (argparse's text on stderr, and with -json the
// document {"error": {"code": "USAGE", "message"}} on stdout as well): "error: MESSAGE" on stderr unless
// the flag package has printed the problem already; exit status 2.
func usageFailure(asJSON bool, message string, printed bool) int {
	if !printed {
		fmt.Fprintf(os.Stderr, "error: %s\n", message)
	}
	if asJSON {
		fail(true, errorDoc{Code: "USAGE", Message: message}, "", exitInvalid)
	}
	return exitInvalid
}

// callFailure reports a failed call and returns `grpo`'s exit status for it: 2 for INVALID_ARGUMENT,
// else 1; after Ctrl-C the INTERRUPTED error (130). A refused submission prints as grpoclient.SubmitError
// renders it ("error: ..."), another *grpoclient.Error as printError does; with -json either is its JSON
// document (MarshalJSON), and an error that is not the trainer's is LOCAL.
func callFailure(asJSON bool, err error) int {
	if interrupted.Load() { // the call ended because of Ctrl-C
		return interruptedFailure(asJSON)
	}
	status := exitFailure
	var e *grpoclient.Error
	if errors.As(err, &e) && e.Code == codes.InvalidArgument {
		status = exitInvalid
	}
	var refused *grpoclient.SubmitError
	switch {
	case errors.As(err, &refused):
		return fail(asJSON, refused, "error: "+refused.Error(), status)
	case e != nil:
		if !asJSON {
			printError(err)
			return status
		}
		return fail(true, e, "", status)
	}
	return fail(asJSON, errorDoc{Code: "LOCAL", Message: err.Error()}, err.Error(), status)
}

// usageError is a command's flags that did not parse (or -h): exit status 2 (0 for -h), as for the
// global flags, and no second message.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }

func printError(err error) { printErrorTo(os.Stderr, err) }

// printErrorTo prints a failed call as the Python CLI does: "CODE: message", then one indented line per
// field violation, the retry delay and each precondition type ("  precondition: DESTINATION_NOT_EMPTY").
func printErrorTo(w io.Writer, err error) {
	var e *grpoclient.Error
	if !errors.As(err, &e) {
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintf(w, "%s: %s\n", grpoclient.CodeName(e.Code), e.Message)
	for _, line := range e.DetailLines() {
		fmt.Fprintln(w, line)
	}
}

func randomID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "go-example-" + hex.EncodeToString(b)
}

func submit(ctx context.Context, c *grpoclient.Client, timeout time.Duration, args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	bad := fs.Bool("bad", false, "send an invalid role to show a BadRequest detail")
	answer := fs.String("answer", "42", "the gold answer")
	id := fs.String("id", "", "prompt id (default: random)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	question := strings.Join(fs.Args(), " ")
	if question == "" {
		question = "What is 17 + 25?"
	}
	if *id == "" {
		*id = randomID()
	}
	role := "user"
	if *bad {
		role = "robot"
	}
	prompt := &trainerv1.Prompt{
		Id:        *id,
		Messages:  []*rewardv1.Message{{Role: role, Content: question}},
		Reference: &trainerv1.Prompt_Answer{Answer: *answer},
		Rewards:   []*trainerv1.RewardSpec{{Backend: "math", Weight: 1}},
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.SubmitPrompts(cctx, []*trainerv1.Prompt{prompt}, "")
	if err != nil {
		return err
	}
	fmt.Printf("accepted %s: %s; queue depth %d\n", grpoclient.Counted(len(res.AcceptedIds), "prompt"), strings.Join(res.AcceptedIds, ", "), res.QueueDepth)
	return nil
}

func printStep(s *trainerv1.StepReport) {
	m := s.GetMetrics()
	fmt.Printf("step %d %s: reward mean %.4f, completions %d, step seconds %.2f, engine %s\n",
		s.GetStep(), s.GetState(), m.GetRewardMean(), m.GetCompletions(), m.GetStepSeconds(), s.GetRolloutEngine())
}

func stepStatus(ctx context.Context, c *grpoclient.Client, timeout time.Duration, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	step := fs.Int64("step", 0, "the step (0 = latest)")
	samples := fs.Bool("samples", false, "also print the completions the trainer kept of the step, with their rewards")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	call := c.StepStatus
	if *samples {
		call = c.StepStatusWithSamples
	}
	res, err := call(cctx, *step)
	if err != nil {
		return err
	}
	run := res.GetRun()
	fmt.Printf("run state: %s, latest step %d, queue depth %d, checkpoint step %d\n",
		run.GetState(), run.GetLatestStep(), run.GetQueueDepth(), run.GetCheckpointStep())
	if run.GetWaitingFor() != "" {
		fmt.Printf("waiting: %s\n", run.GetWaitingFor())
	}
	if res.GetStep() != nil {
		printStep(res.GetStep())
	}
	for _, sample := range res.GetSamples() {
		reward := "masked"
		if sample.GetRewardValid() {
			reward = fmt.Sprintf("%.4g", sample.GetReward())
		}
		fmt.Printf("sample %s #%d: reward %s, %d tokens, %s\n", sample.GetPromptId(), sample.GetIndex(), reward,
			sample.GetCompletionTokens(), sample.GetFinishReason())
		for _, score := range sample.GetScores() {
			fmt.Printf("  %s %s %.4g: %s\n", score.GetBackend(), score.GetStatus(), score.GetScore(), score.GetFeedback())
		}
	}
	if res.GetSamplesLeftOut() > 0 {
		fmt.Printf("%d more samples left out to keep the response under 4 MiB\n", res.GetSamplesLeftOut())
	}
	return nil
}

func watch(ctx context.Context, c *grpoclient.Client, args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	after := fs.Int64("after", 0, "send finished steps after this one first")
	n := fs.Int("n", 0, "stop after this many finished steps (0 = never)")
	wait := fs.Duration("wait", 0, "give up after this long (0 = never)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if *wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	seen := 0
	return c.WatchSteps(ctx, *after, false, func(r *trainerv1.WatchStepsResponse) error {
		printStep(r.GetStep())
		seen++
		if *n > 0 && seen >= *n {
			return grpoclient.ErrStop
		}
		return nil
	})
}

// follow prints one line per report of FollowSteps, which carries on across trainer restarts, and a
// "reconnecting: REASON" line on stderr before each reconnect. SIGINT or SIGTERM end it (exit status 0).
func follow(ctx context.Context, c *grpoclient.Client, args []string) error {
	fs := flag.NewFlagSet("follow", flag.ContinueOnError)
	after := fs.Int64("after", 0, "send finished steps after this one first")
	includeRunning := fs.Bool("running", false, "also print a report when a step starts")
	retry := fs.Duration("retry", 2*time.Second, "wait before each reconnect")
	giveUp := fs.Duration("give-up", 10*time.Minute, "give up after the trainer is unavailable this long (0 = never)")
	n := fs.Int("n", 0, "stop after this many reports (0 = never)")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	opts := grpoclient.FollowOptions{
		IncludeRunning: *includeRunning,
		RetryInterval:  *retry,
		GiveUpAfter:    *giveUp,
		OnReconnect:    func(reason string) { fmt.Fprintf(os.Stderr, "reconnecting: %s\n", reason) },
	}
	if *giveUp == 0 {
		opts.GiveUpAfter = -1 // FollowOptions: negative = never
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	seen := 0
	err := c.FollowSteps(ctx, *after, opts, func(r *trainerv1.WatchStepsResponse) error {
		if r.GetForgottenThrough() > 0 {
			fmt.Fprintf(os.Stderr, "no longer kept: the reports of the steps before this one, up to step %d (retention.step_reports_seconds)\n", r.GetForgottenThrough())
		}
		s := r.GetStep()
		ts := s.GetStartedAt()
		line := fmt.Sprintf("step %d %s started %d.%09d, checkpoint step %d, reward mean %.4f",
			s.GetStep(), s.GetState(), ts.GetSeconds(), ts.GetNanos(), r.GetRun().GetCheckpointStep(),
			s.GetMetrics().GetRewardMean())
		if s.GetError() != "" {
			line += ", error: " + s.GetError()
		}
		fmt.Println(line)
		seen++
		if *n > 0 && seen >= *n {
			return grpoclient.ErrStop
		}
		return nil
	})
	if errors.Is(err, context.Canceled) {
		return nil // interrupted: the way to end it
	}
	return err
}

func backends(ctx context.Context, c *grpoclient.Client, timeout time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := c.ListBackends(cctx)
	if err != nil {
		return err
	}
	fmt.Printf("registry version %d\n", res.GetRegistryVersion())
	for _, b := range res.GetBackends() {
		fmt.Printf("%s\t%s\t%s\t%s\n", b.GetName(), b.GetAddress(), b.GetSource(), b.GetCircuit())
	}
	return nil
}
