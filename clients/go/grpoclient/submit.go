package grpoclient

// SubmitFile: a prompt file sent in idempotent batches, as the Python client's submit_file does
// (clients/python/grpo_client/client.py): the same batches, the same request ids, the same re-chunking
// when the trainer names its message size or prompts-per-request limit, the same retries.

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/golang/protobuf/proto"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
)

// SubmitOptions configure SubmitFile and SubmitAll. The zero value is the Python client's defaults.
type SubmitOptions struct {
	// BatchSize is the most prompts per SubmitPrompts request (0: 256; negative is an error).
	BatchSize int
	// RequestID, when set, names the batches "<RequestID>-<index>"; "" derives each batch's id from its
	// content (BatchRequestID), so that the same file sent again queues nothing twice.
	RequestID string
	// MaxAttempts bounds the sends of one batch refused with RESOURCE_EXHAUSTED (queue full) or
	// UNAVAILABLE (0: 5).
	MaxAttempts int
	// CallTimeout is the deadline of each SubmitPrompts call (0: 30 s; negative: only ctx's).
	CallTimeout time.Duration
	// OnBatch, when set, is called after each accepted batch with its number of prompts and the answer.
	OnBatch func(prompts int, res *trainerv1.SubmitPromptsResponse)
	// OnRetry, when set, is called before each wait to send again a batch the trainer refused as full
	// (RESOURCE_EXHAUSTED) or unavailable: the refusal, the wait, and the attempt that failed (1-based;
	// the last retry is attempt MaxAttempts-1). Without it a wait of seconds looks like a hang.
	OnRetry func(err *Error, wait time.Duration, attempt int)
}

// SubmitResult is what a submission did: the accepted ids (new and replayed), the request ids of the
// batches sent, how many of them the trainer had seen before (a re-run: their request ids were answered
// with the first answer and nothing was queued again; ReplayedIDs are their prompts), the queue depth
// after the last batch queued now (a replayed answer's depth is from its first time), and Resized: a
// sentence for each batch the trainer refused as over its message size or prompt count limit, which was
// then sent in smaller batches.
type SubmitResult struct {
	AcceptedIDs      []string
	Batches          int
	DuplicateBatches int
	QueueDepth       int64
	RequestIDs       []string
	Resized          []string
	ReplayedIDs      []string
}

// QueuedIDs are the ids this submission queued (accepted, not replayed).
func (r *SubmitResult) QueuedIDs() []string {
	replayed := map[string]bool{}
	for _, id := range r.ReplayedIDs {
		replayed[id] = true
	}
	var out []string
	for _, id := range r.AcceptedIDs {
		if !replayed[id] {
			out = append(out, id)
		}
	}
	return out
}

// PromptRef is one prompt of a submission: its 0-based Index and its ID.
type PromptRef struct {
	Index int
	ID    string
}

// LocatedViolation is a field violation of a refused batch traced back to its prompt: Index in the whole
// submission (0-based), PromptID, PromptField (the path inside that prompt, "" for the prompt as a whole)
// and Line, the prompt's line in the file (0 when the prompts did not come from a file).
type LocatedViolation struct {
	Violation   FieldViolation
	Index       int
	PromptID    string
	PromptField string
	Line        int

	violation int // its index in the refused batch's FieldViolations
}

// Format renders "FILE:LINE: id ID: field: message", or "prompts[INDEX] (id ID): field: message" without
// a file.
func (l LocatedViolation) Format(source string) string {
	where := fmt.Sprintf("prompts[%d] (id %s)", l.Index, l.PromptID)
	if source != "" && l.Line != 0 {
		where = fmt.Sprintf("%s:%d: id %s", source, l.Line, l.PromptID)
	}
	what := ""
	if l.PromptField != "" {
		what = l.PromptField + ": "
	}
	return where + ": " + what + l.Violation.Description
}

// SubmitError is a submission that stopped at a batch the trainer refused: Cause is that batch's
// *Error, and the rest says where it stopped. Batch BatchIndex (0-based) of Batches was refused:
// BatchPrompts prompts from prompt BatchFirst (0-based) on; BatchSize is the batch size asked for (a batch
// over the trainer's message or count limit is sent again in smaller ones before anything is refused).
// AcceptedIDs are the prompts of the batches before it, which the trainer accepted and keeps.
// RefusedBatchQueued is false when the status code says the refused batch was not stored, nil when it
// cannot tell (UNAVAILABLE, DEADLINE_EXCEEDED: the answer was lost). Located traces each
// "prompts[i]..." field violation to the prompt (and, from a file, the line) it names. Source and Lines
// (the line of each prompt of the submission) are set when the prompts came from a file.
//
// Submitting the same prompts again with the same batch size and request id is safe: the accepted
// batches are sent with the same request ids, and the trainer answers them as duplicates.
type SubmitError struct {
	Cause              *Error
	BatchIndex         int
	Batches            int
	BatchSize          int
	BatchFirst         int
	BatchPrompts       int
	AloneTooLarge      []PromptRef
	Resized            []string
	AcceptedIDs        []string
	RefusedBatchQueued *bool
	Located            []LocatedViolation
	Source             string
	Lines              []int
	TotalPrompts       int
}

// Unwrap gives the refused batch's *Error (errors.As finds it).
func (e *SubmitError) Unwrap() error { return e.Cause }

// TooLarge: the refused batch, a single prompt, was bigger than the trainer's limits.max_message_bytes.
func (e *SubmitError) TooLarge() bool { return tooLarge(e.Cause) }

func (e *SubmitError) span(first, last int) string {
	text := Span("prompt", first+1, last+1)
	if e.Lines != nil {
		text += ", " + Span("line", e.Lines[first], e.Lines[last])
	}
	return text
}

func (e *SubmitError) acceptedThroughLine() int {
	if n := len(e.AcceptedIDs); e.Lines != nil && n > 0 {
		return e.Lines[n-1]
	}
	return 0
}

// Progress says, in words, what was queued before the refused batch and how to carry on.
func (e *SubmitError) Progress() string {
	n, k := len(e.AcceptedIDs), e.BatchIndex+1
	refused := fmt.Sprintf("Batch %d was not queued", k)
	if e.RefusedBatchQueued == nil || *e.RefusedBatchQueued {
		refused = fmt.Sprintf("Batch %d may or may not have been queued (its answer was lost)", k)
	}
	switch {
	case e.Batches > k+1:
		refused += fmt.Sprintf("; batches %d-%d were not sent.", k+1, e.Batches)
	case e.Batches == k+1:
		refused += fmt.Sprintf("; batch %d was not sent.", k+1)
	default:
		refused += "."
	}
	before := "Nothing was accepted before it."
	if n > 0 {
		batches := fmt.Sprintf("batches 1-%d", k-1)
		if k == 2 {
			batches = "batch 1"
		}
		where := Span("prompt", 1, n)
		if e.Lines != nil {
			where = Span("line", e.Lines[0], e.acceptedThroughLine())
		}
		were, them := "were", "them"
		if n == 1 {
			were, them = "was", "it"
		}
		before = fmt.Sprintf("The %s of %s (%s) %s accepted before it; the trainer keeps %s.", Counted(n, "prompt"),
			batches, where, were, them)
	}
	rerun := "run the same command again (same batch size and request id): the trainer answers the batches it " +
		"already accepted as duplicates, by their request ids, and queues nothing twice."
	c := e.Cause
	if e.TooLarge() {
		limit := messageLimit(c)
		over := e.AloneTooLarge
		if len(over) == 0 && e.BatchPrompts == 1 {
			over = []PromptRef{{Index: e.BatchFirst}}
		}
		var fix string
		if len(over) > 0 {
			var named []string
			for i, p := range over {
				if i == 5 {
					break
				}
				s := e.span(p.Index, p.Index)
				if p.ID != "" {
					s += " (id " + p.ID + ")"
				}
				named = append(named, s)
			}
			text := strings.Join(named, "; ")
			if len(over) > 5 {
				text += fmt.Sprintf("; and %d more", len(over)-5)
			}
			verb, pronoun := "is", "it"
			if len(over) != 1 {
				verb, pronoun = "are each", "them"
			}
			bound := ""
			if limit > 0 {
				bound = fmt.Sprintf(" (%d bytes)", limit)
			}
			fix = strings.ToUpper(text[:1]) + text[1:] + " alone " + verb + " more than the trainer takes in one message" +
				bound + ": shorten " + pronoun + ", or have the trainer's limits.max_message_bytes raised"
		} else {
			fix = "The batch is more than the trainer takes in one message: use a smaller --batch-size"
		}
		if n == 0 {
			return refused + " " + before + " " + fix + "; then run the command again."
		}
		return refused + " " + before + " " + fix + "; then " + rerun
	}
	if c.Code == codes.ResourceExhausted && hasRetryInfo(c) {
		if hasQuotaSubject(c, "store") {
			return refused + " " + before + " The trainer's store disk stayed full through the retries: once its operator has made room, " + rerun
		}
		return refused + " " + before + " The trainer's queue stayed full through the retries: once it has room, " + rerun
	}
	if c.Code == codes.Unavailable || c.Code == codes.DeadlineExceeded {
		return refused + " " + before + " Once the trainer answers again, " + rerun
	}
	if len(c.FieldViolations) > 0 {
		all := true
		for _, v := range c.FieldViolations {
			all = all && strings.Contains(v.Description, "already queued")
		}
		if all {
			return refused + " " + before + " The ids named are queued already: wait until they are trained, or cancel " +
				"them (grpo cancel), to submit them again. (Running a file again with another --batch-size " +
				"or --request-id sends its batches under new keys, so the prompts queued the first time " +
				"are refused like this rather than answered as duplicates.)"
		}
	}
	if n == 0 && e.RefusedBatchQueued != nil && !*e.RefusedBatchQueued {
		return refused + " " + before + " Fix what is named above and run the command again."
	}
	after := ""
	if n > 0 && e.Lines != nil {
		after = fmt.Sprintf(" (editing only lines after line %d)", e.acceptedThroughLine())
	}
	return refused + " " + before + " Fix what is named above" + after + " and " + rerun
}

// Error renders what the Python client prints for a refused submission: the batch and the trainer's
// message, each field violation at its file line, the retry delay and preconditions, the batches resized
// before it, and Progress.
func (e *SubmitError) Error() string {
	c := e.Cause
	first, last := e.BatchFirst, e.BatchFirst+e.BatchPrompts-1
	lines := []string{fmt.Sprintf("%s: batch %d of %d (%s) was refused: %s", CodeName(c.Code), e.BatchIndex+1,
		e.Batches, e.span(first, last), c.Message)}
	for i, v := range c.FieldViolations {
		text := "  " + v.Field + ": " + v.Description
		for _, l := range e.Located {
			if l.violation == i {
				text = "  " + l.Format(e.Source)
				break
			}
		}
		lines = append(lines, text)
	}
	// The rest as the refused call's own lines give it (the retry delay, preconditions, other details).
	lines = append(lines, c.DetailLines()[len(c.FieldViolations):]...)
	for _, note := range e.Resized {
		lines = append(lines, "(Before it, "+note+".)")
	}
	return strings.Join(append(lines, e.Progress()), "\n")
}

// otherDetails are the type names of the details the Python client does not decode either (none of
// BadRequest, RetryInfo, PreconditionFailure, ResourceInfo and QuotaFailure), which it lists by name:
// also those of types this program does not link, which grpc-go hands over as errors, not messages.
func otherDetails(e *Error) []string {
	var out []string
	raw := e.st.Proto().GetDetails() // a nil status gives none
	for i, d := range e.Details {
		switch d := d.(type) {
		case *errdetails.BadRequest, *errdetails.RetryInfo, *errdetails.PreconditionFailure, *errdetails.ResourceInfo,
			*errdetails.QuotaFailure:
		case proto.Message:
			out = append(out, proto.MessageName(d))
		default:
			if i < len(raw) {
				url := raw[i].GetTypeUrl()
				out = append(out, url[strings.LastIndex(url, "/")+1:])
			}
		}
	}
	return out
}

// hasQuotaSubject: whether e's QuotaFailure names subject as what is full ("queue", "store").
func hasQuotaSubject(e *Error, subject string) bool {
	for _, s := range e.QuotaSubjects {
		if s == subject {
			return true
		}
	}
	return false
}

func hasRetryInfo(e *Error) bool {
	for _, d := range e.Details {
		if _, ok := d.(*errdetails.RetryInfo); ok {
			return true
		}
	}
	return false
}

// notStored: codes after which the refused batch is known not to be stored (the trainer answered, or
// never ran it); after any other (UNAVAILABLE, DEADLINE_EXCEEDED, ...) it may have been.
var notStored = map[codes.Code]bool{
	codes.InvalidArgument: true, codes.ResourceExhausted: true, codes.FailedPrecondition: true,
	codes.Unauthenticated: true, codes.PermissionDenied: true, codes.NotFound: true,
	codes.AlreadyExists: true, codes.OutOfRange: true, codes.Unimplemented: true,
}

var (
	promptField    = regexp.MustCompile(`^prompts\[(\d+)\]((?s).*)$`)           // "prompts[23].messages[0].content"
	messageLimitRE = regexp.MustCompile(`larger than max \((\d+) vs\. (\d+)\)`) // gRPC core's wording
	// the trainer's "prompts" violations that cap a request: limits.max_prompts_per_request, limits.max_queue_depth
	countLimitRE = regexp.MustCompile(`at most (\d+) are allowed per request|can never fit a queue of at most (\d+)`)
)

// requestIDSlackBytes is a SubmitPromptsRequest's request_id field beyond the user's prefix.
const requestIDSlackBytes = 64

// tooLarge: a request refused for its size, gRPC's RESOURCE_EXHAUSTED "Received message larger than max"
// (a full queue is RESOURCE_EXHAUSTED too, with a RetryInfo delay; sending the same bytes again cannot help).
func tooLarge(e *Error) bool {
	return e.Code == codes.ResourceExhausted && !hasRetryInfo(e) && strings.Contains(e.Message, "larger than max")
}

// messageLimit is the message size limit (bytes) a too-large refusal names, or 0.
func messageLimit(e *Error) int {
	if !tooLarge(e) {
		return 0
	}
	if m := messageLimitRE.FindStringSubmatch(e.Message); m != nil {
		n, _ := strconv.Atoi(m[2])
		return n
	}
	return 0
}

// countLimit is the prompts-per-request limit an INVALID_ARGUMENT on the field "prompts" names, or 0.
func countLimit(e *Error) int {
	if e.Code != codes.InvalidArgument {
		return 0
	}
	for _, v := range e.FieldViolations {
		if v.Field != "prompts" {
			continue
		}
		if m := countLimitRE.FindStringSubmatch(v.Description); m != nil {
			n, _ := strconv.Atoi(m[1] + m[2]) // one of the two groups matched
			return n
		}
	}
	return 0
}

func where(index int, lines []int) string {
	s := fmt.Sprintf("prompt %d", index+1)
	if lines != nil {
		s += fmt.Sprintf(" (line %d)", lines[index])
	}
	return s
}

// batchPlan is how a submission is cut into requests: at most maxPrompts prompts each, and once the
// trainer has named its message size limit, no more serialized bytes than that. shrink lowers the limits
// after a refusal; the grouping depends only on the prompts and the limits, so a re-run groups alike.
type batchPlan struct {
	prompts    []*trainerv1.Prompt
	maxPrompts int
	maxBytes   int // 0: not known
	overhead   int
	sizes      []int
}

func newBatchPlan(prompts []*trainerv1.Prompt, maxPrompts int, requestID string) *batchPlan {
	return &batchPlan{prompts: prompts, maxPrompts: maxPrompts, overhead: requestIDSlackBytes + len(requestID)}
}

// size is prompt i's bytes inside the request (the field's tag and length prefix included).
func (p *batchPlan) size(i int) int {
	if p.sizes == nil {
		p.sizes = make([]int, len(p.prompts))
		for k, pr := range p.prompts {
			p.sizes[k] = len(MarshalPrompt(pr))
		}
	}
	n := p.sizes[i]
	bits := 0
	for v := n; v > 0; v >>= 1 {
		bits++
	}
	prefix := (bits + 6) / 7
	if prefix < 1 {
		prefix = 1
	}
	return n + 1 + prefix
}

// batch is the batch that begins at prompt start (at least one prompt).
func (p *batchPlan) batch(start int) []*trainerv1.Prompt {
	end := start + p.maxPrompts
	if end > len(p.prompts) {
		end = len(p.prompts)
	}
	if p.maxBytes > 0 {
		total, stop := p.overhead, start
		for stop < end && (stop == start || total+p.size(stop) <= p.maxBytes) {
			total += p.size(stop)
			stop++
		}
		end = stop
	}
	return p.prompts[start:end]
}

// count is how many batches the prompts from start on make.
func (p *batchPlan) count(start int) int {
	n := 0
	for start < len(p.prompts) {
		start += len(p.batch(start))
		n++
	}
	return n
}

// aloneTooLarge lists the prompts from start on that are more than the message size limit by themselves.
func (p *batchPlan) aloneTooLarge(start int) []int {
	if p.maxBytes == 0 {
		return nil
	}
	var out []int
	for i := start; i < len(p.prompts); i++ {
		if p.overhead+p.size(i) > p.maxBytes {
			out = append(out, i)
		}
	}
	return out
}

// shrink: after the batch of sent prompts at start was refused with e, when e is the trainer's message
// size or prompt count limit and the batch can get smaller, lower the limits so that the next batch from
// start is smaller and return a sentence saying so; else "".
func (p *batchPlan) shrink(e *Error, start, sent int, at string) string {
	if sent <= 1 {
		return ""
	}
	if tooLarge(e) {
		limit := messageLimit(e)
		if limit > 0 {
			p.maxBytes = limit
		}
		if limit == 0 || len(p.batch(start)) >= sent {
			p.maxPrompts = sent / 2
			if p.maxPrompts < 1 {
				p.maxPrompts = 1
			}
		}
		bound := ""
		if limit > 0 {
			bound = fmt.Sprintf(" (%d bytes)", limit)
		}
		return fmt.Sprintf("the batch of %d prompts from %s on was more than the trainer takes in one message%s; "+
			"sent in smaller batches from there", sent, at, bound)
	}
	count := countLimit(e)
	if count == 0 {
		return ""
	}
	p.maxPrompts = count
	if sent-1 < p.maxPrompts {
		p.maxPrompts = sent - 1
	}
	if p.maxPrompts < 1 {
		p.maxPrompts = 1
	}
	return fmt.Sprintf("the trainer takes at most %s per request; batches of %d from %s on", Counted(count, "prompt"),
		p.maxPrompts, at)
}

// sleepFor waits d or until ctx ends (a variable so that tests need not wait).
var sleepFor = func(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SubmitFile submits a prompt file in batches of opts.BatchSize, each with a request id derived from its
// content (or "<RequestID>-<batch index>"), so running it again queues nothing twice.
//
// The whole file is parsed first: a *PromptFileError for a bad file, and nothing is sent. The trainer
// checks each batch against its own limits; a batch it refuses ends the submission with a *SubmitError,
// which names the file's line of each bad field and the prompts already accepted (the batches before it
// stay queued; submitting the file again the same way, once fixed, queues nothing twice).
//
// A batch refused with RESOURCE_EXHAUSTED (queue full) or UNAVAILABLE is sent again after the server's
// RetryInfo delay (or 1 s, doubling up to 30 s), up to opts.MaxAttempts times; safe because of its request
// id; opts.OnRetry is called before each such wait. A batch the trainer refuses as more than it takes in
// one message (its limits.max_message_bytes) or more prompts than it takes per request
// (limits.max_prompts_per_request) stored nothing, and is sent again in smaller batches within the limit
// the refusal names (each such change is a sentence in SubmitResult.Resized); only a single prompt over
// the message limit is an error (SubmitError.TooLarge).
func (c *Client) SubmitFile(ctx context.Context, path string, opts SubmitOptions) (*SubmitResult, error) {
	f, err := LoadPromptFile(path)
	if err != nil {
		return nil, err
	}
	return c.SubmitPromptFile(ctx, f, opts)
}

// SubmitPromptFile is SubmitFile for a file LoadPromptFile has read.
func (c *Client) SubmitPromptFile(ctx context.Context, f *PromptFile, opts SubmitOptions) (*SubmitResult, error) {
	return c.submit(ctx, f.Prompts, f.Source, f.Lines, opts)
}

// SubmitAll is SubmitFile for prompts already in memory (a *SubmitError then names prompts by index).
func (c *Client) SubmitAll(ctx context.Context, prompts []*trainerv1.Prompt, opts SubmitOptions) (*SubmitResult, error) {
	return c.submit(ctx, prompts, "", nil, opts)
}

func (c *Client) submit(ctx context.Context, prompts []*trainerv1.Prompt, source string, lines []int, opts SubmitOptions) (*SubmitResult, error) {
	batchSize := opts.BatchSize
	if batchSize == 0 {
		batchSize = 256
	}
	if batchSize < 1 {
		return nil, fmt.Errorf("batch size must be >= 1, got %d", batchSize)
	}
	maxAttempts := opts.MaxAttempts
	if maxAttempts <= 0 {
		maxAttempts = 5
	}
	res := &SubmitResult{}
	var depth *int64
	var accepted []string
	plan := newBatchPlan(prompts, batchSize, opts.RequestID)
	for start, index := 0, 0; start < len(prompts); {
		batch := plan.batch(start)
		rid := BatchRequestID(batch, index, opts.RequestID)
		response, maybeStored, err := c.submitWithRetry(ctx, batch, rid, maxAttempts, opts.CallTimeout, opts.OnRetry)
		if err != nil {
			e, ok := err.(*Error)
			if !ok {
				return res, err
			}
			// A batch over the trainer's size or count limit was not stored: send the same prompts again in
			// batches within the limit the error names. The new grouping depends only on the prompts and the
			// limit, so running the same command again sends the same keys.
			note := plan.shrink(e, start, len(batch), where(start, lines))
			// A prompt over the size limit by itself cannot be sent: stop before sending any smaller batch, so
			// that once it is shortened the same command sends this batch as it did the first time.
			var over []int
			if note != "" {
				over = plan.aloneTooLarge(start)
			}
			if note != "" && len(over) == 0 {
				res.Resized = append(res.Resized, note)
				continue
			}
			return res, stopped(e, prompts, source, lines, start, len(batch), index,
				index+1+plan.count(start+len(batch)), batchSize, accepted, over, res.Resized)
		}
		res.RequestIDs = append(res.RequestIDs, rid)
		accepted = append(accepted, response.GetAcceptedIds()...)
		// A duplicate after an attempt of this run that may have been stored (its answer lost) is this run's
		// own batch, queued now: counted as a replay, the advice to use a new request id would queue it twice.
		if response.GetDuplicate() && !maybeStored {
			res.DuplicateBatches++
			res.ReplayedIDs = append(res.ReplayedIDs, response.GetAcceptedIds()...)
		}
		if !response.GetDuplicate() || depth == nil {
			d := response.GetQueueDepth()
			depth = &d
		}
		start += len(batch)
		index++
		if opts.OnBatch != nil {
			opts.OnBatch(len(batch), response)
		}
	}
	res.AcceptedIDs = accepted
	res.Batches = len(res.RequestIDs)
	if depth != nil {
		res.QueueDepth = *depth
	}
	return res, nil
}

// submitWithRetry sends batch, again after a refusal that may pass; it also says whether an earlier attempt
// may have been stored (it failed with a code after which the trainer may have stored the batch, its answer
// lost).
func (c *Client) submitWithRetry(ctx context.Context, batch []*trainerv1.Prompt, rid string, maxAttempts int, timeout time.Duration,
	onRetry func(*Error, time.Duration, int)) (*trainerv1.SubmitPromptsResponse, bool, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	delay := time.Second
	maybeStored := false
	for attempt := 1; ; attempt++ {
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if timeout > 0 {
			cctx, cancel = context.WithTimeout(ctx, timeout)
		}
		res, err := c.SubmitPrompts(cctx, batch, rid)
		cancel()
		if err == nil {
			return res, maybeStored, nil
		}
		e, ok := err.(*Error)
		if !ok || !notStored[e.Code] {
			maybeStored = true
		}
		retryable := ok && (e.Code == codes.ResourceExhausted || e.Code == codes.Unavailable) && !tooLarge(e)
		if !retryable || attempt >= maxAttempts || ctx.Err() != nil {
			return nil, maybeStored, err
		}
		wait := delay
		if hasRetryInfo(e) {
			wait = e.RetryDelay
		}
		if onRetry != nil {
			onRetry(e, wait, attempt)
		}
		if err := sleepFor(ctx, wait); err != nil {
			return nil, maybeStored, err
		}
		delay *= 2
		if delay > 30*time.Second {
			delay = 30 * time.Second
		}
	}
}

// stopped is the *SubmitError of batch index (prompts first..first+inBatch-1, of batches in all) refused
// with e, its "prompts[i]..." violations traced back.
func stopped(e *Error, prompts []*trainerv1.Prompt, source string, lines []int, first, inBatch, index, batches,
	batchSize int, accepted []string, alone []int, resized []string) *SubmitError {
	var located []LocatedViolation
	for k, v := range e.FieldViolations {
		m := promptField.FindStringSubmatch(v.Field)
		if m == nil {
			continue
		}
		i, err := strconv.Atoi(m[1])
		if err != nil || i >= inBatch {
			continue
		}
		at := first + i
		l := LocatedViolation{Violation: v, Index: at, PromptID: prompts[at].GetId(), PromptField: strings.TrimPrefix(m[2], "."), violation: k}
		if lines != nil {
			l.Line = lines[at]
		}
		located = append(located, l)
	}
	var queued *bool
	if notStored[e.Code] {
		f := false
		queued = &f
	}
	var over []PromptRef
	for _, i := range alone {
		over = append(over, PromptRef{Index: i, ID: prompts[i].GetId()})
	}
	return &SubmitError{
		Cause: e, BatchIndex: index, Batches: batches, BatchSize: batchSize, BatchFirst: first, BatchPrompts: inBatch,
		AloneTooLarge: over, Resized: append([]string(nil), resized...), AcceptedIDs: append([]string(nil), accepted...),
		RefusedBatchQueued: queued, Located: located, Source: source, Lines: lines, TotalPrompts: len(prompts),
	}
}
