// Package grpoclient is a small client for the GRPO trainer's gRPC API (grpo.trainer.v1.TrainerService):
// one method per RPC, bearer-token and TLS options, and *Error values that carry the google.rpc details
// (BadRequest field violations, RetryInfo) the trainer sends with a failure.
//
// It builds with Debian's Go packages (grpc-go 1.33, golang/protobuf 1.3) in GOPATH mode; see
// clients/go/build.sh and docs/clients.md.
package grpoclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"time"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Options configure Dial. The zero value is a plaintext connection with no token.
type Options struct {
	// Token is sent as "authorization: Bearer <token>" on every call.
	Token string
	// TLS, when set, makes the connection use TLS with this config (RootCAs, Certificates for mTLS).
	TLS *tls.Config
	// DialTimeout bounds the wait for the first connection (default 10 s).
	DialTimeout time.Duration
	// MaxReceiveBytes is the largest message accepted from the server (default 64 MiB).
	MaxReceiveBytes int
	// NoWait makes Dial return at once, without waiting for the connection: calls made while the trainer
	// is not up fail Unavailable, which FollowSteps waits through (for a follower started before its
	// trainer). A TLS handshake failure then also comes back as Unavailable on the calls.
	NoWait bool
}

// Client talks to one trainer. It is safe for concurrent use; Close it when done.
type Client struct {
	conn *grpc.ClientConn
	// Stub is the generated client, for calls this package does not wrap.
	Stub trainerv1.TrainerServiceClient
}

// bearer implements credentials.PerRPCCredentials; it is allowed over plaintext because the trainer's
// tests and local setups run without TLS (use TLS whenever the network is not trusted).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (b bearer) RequireTransportSecurity() bool { return false }

// MaxReconnectBackoff is the longest wait between two attempts to reconnect to a trainer that is down.
const MaxReconnectBackoff = 5 * time.Second

// Dial connects to target ("HOST:PORT") and waits until the connection is up or DialTimeout passes; the
// error then names the last connection failure ("connection refused": a trainer that is not up yet is
// waited for). A TLS handshake that no retry can mend (a certificate not signed by a trusted CA or not
// for this host, a TLS alert ending it) fails it at once with a *HandshakeError (tlsfailfast.go).
//
// A Token an HTTP/2 header cannot carry (a space, a line break, a character outside printable ASCII) is
// refused at once with an error naming the character and its position, never the token.
func Dial(ctx context.Context, target string, opts Options) (*Client, error) {
	if err := sendableToken(opts.Token); err != nil {
		return nil, err
	}
	timeout := opts.DialTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	maxRecv := opts.MaxReceiveBytes
	if maxRecv == 0 {
		maxRecv = 64 << 20
	}
	// WithReturnConnectionError: a Dial that times out says why it could not connect (connection refused,
	// a TLS handshake failure such as an unknown CA), not only "context deadline exceeded".
	dialOpts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv)),
		// grpc-go spaces its attempts to reconnect to a trainer that went away with a backoff that grows
		// to 2 minutes, and a call made meanwhile fails at once: a trainer back after a long restart would
		// be found up to 2 minutes late. At most MaxReconnectBackoff, as the Python and TypeScript clients.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: MaxReconnectBackoff},
			MinConnectTimeout: 20 * time.Second,
		})}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var failed *dialFailure
	if opts.TLS != nil {
		// A permanent handshake failure ends the wait (tlsfailfast.go).
		dctx, failed = withDialFailure(dctx)
		creds := newFailFastTLS(opts.TLS, failed)
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(creds))
	} else {
		dialOpts = append(dialOpts, grpc.WithInsecure())
	}
	if opts.Token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(opts.Token)))
	}
	if !opts.NoWait {
		dialOpts = append(dialOpts, grpc.WithBlock(), grpc.WithReturnConnectionError())
	}
	conn, err := grpc.DialContext(dctx, target, dialOpts...)
	if err != nil {
		if failed != nil && ctx.Err() == nil {
			if tlsErr := failed.failure(); tlsErr != nil {
				return nil, tlsErr
			}
		}
		return nil, err
	}
	return &Client{conn: conn, Stub: trainerv1.NewTrainerServiceClient(conn)}, nil
}

// CheckToken is the error Dial returns for a token an authorization header cannot carry, without dialing:
// nil for a token Dial sends (or none).
func CheckToken(token string) error { return sendableToken(token) }

// sendableToken refuses a token an authorization header cannot carry (printable ASCII, no spaces or line
// breaks), naming the bad character but not the secret. Without this check grpc-go sends the header and the
// connection fails with a stream error that says nothing of the token (a token read from a file keeps its
// line break: trim it).
func sendableToken(token string) error {
	runes := []rune(token)
	for i, c := range runes {
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("grpoclient: Options.Token has U+%04X at character %d of %d, which an authorization "+
				"header cannot carry; tokens are printable ASCII without spaces (trim the line break of a token "+
				"read from a file)", c, i+1, len(runes))
		}
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// SubmitPrompts queues prompts. A non-empty requestID makes a retry idempotent (the first answer comes
// back with Duplicate set). Bad input fails with an *Error of code InvalidArgument and FieldViolations.
func (c *Client) SubmitPrompts(ctx context.Context, prompts []*trainerv1.Prompt, requestID string) (*trainerv1.SubmitPromptsResponse, error) {
	res, err := c.Stub.SubmitPrompts(ctx, &trainerv1.SubmitPromptsRequest{Prompts: prompts, RequestId: requestID})
	return res, wrapError("SubmitPrompts", err)
}

// StepStatus reports one step (the latest when step is 0) and the run. Step is nil before the first step.
func (c *Client) StepStatus(ctx context.Context, step int64) (*trainerv1.StepStatusResponse, error) {
	res, err := c.Stub.StepStatus(ctx, &trainerv1.StepStatusRequest{Step: step})
	return res, wrapError("StepStatus", err)
}

// StepStatusWithSamples is StepStatus with the completions the trainer kept of that step in Samples:
// each one's text, and every reward backend's score and feedback.
func (c *Client) StepStatusWithSamples(ctx context.Context, step int64) (*trainerv1.StepStatusResponse, error) {
	res, err := c.Stub.StepStatus(ctx, &trainerv1.StepStatusRequest{Step: step, IncludeSamples: true})
	return res, wrapError("StepStatus", err)
}

// WatchSteps streams step reports (finished steps after afterStep, then live ones) into fn until fn
// returns an error (returned as is; use ErrStop to end without one), ctx ends, or the server closes.
func (c *Client) WatchSteps(ctx context.Context, afterStep int64, includeRunning bool, fn func(*trainerv1.WatchStepsResponse) error) error {
	return c.watch(ctx, afterStep, includeRunning, nil, fn)
}

// watch is WatchSteps that, when onAnswer is set, first waits for the stream's response headers and
// calls onAnswer once they have come: the trainer answered. A trainer sends them as soon as it accepts
// the request, before any report, so an idle trainer answers too. A stream that fails before its headers
// returns that failure without calling onAnswer.
func (c *Client) watch(ctx context.Context, afterStep int64, includeRunning bool, onAnswer func(), fn func(*trainerv1.WatchStepsResponse) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Stub.WatchSteps(ctx, &trainerv1.WatchStepsRequest{AfterStep: afterStep, IncludeRunning: includeRunning})
	if err != nil {
		return wrapError("WatchSteps", err)
	}
	var pending *received // the first Recv's result, when onAnswer needed it
	if onAnswer != nil {
		// Header blocks until the headers come or the stream ends; a stream the trainer ended at once
		// with status OK (no headers) also returns nil: that too is an answer. So does a failure sent as a
		// trailers-only response (a proxy's UNAVAILABLE for a trainer it cannot reach), and grpc-go does
		// not say which it was: such a stream has ended, and its first Recv fails at once, where a
		// trainer's stays open or sends a report.
		if _, err := stream.Header(); err != nil {
			return wrapError("WatchSteps", err)
		}
		first := make(chan received, 1)
		go func() {
			msg, err := stream.Recv()
			first <- received{msg, err}
		}()
		select {
		case r := <-first: // a report, the end, or a failure, at once
			if r.err != nil && r.err != io.EOF {
				return wrapError("WatchSteps", r.err) // no answer from the trainer
			}
			onAnswer()
			pending = &r
		case <-time.After(trailersOnlyWait):
			onAnswer() // still open: the trainer accepted it
			r := <-first
			pending = &r
		}
	}
	for {
		var msg *trainerv1.WatchStepsResponse
		var err error
		if pending != nil {
			msg, err, pending = pending.msg, pending.err, nil
		} else {
			msg, err = stream.Recv()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return wrapError("WatchSteps", err)
		}
		if err := fn(msg); err != nil {
			if err == ErrStop {
				return nil
			}
			return err
		}
	}
}

// received is one Recv's result.
type received struct {
	msg *trainerv1.WatchStepsResponse
	err error
}

// trailersOnlyWait is how long watch waits for a stream's first Recv before it counts the stream as the
// trainer's answer: a trailers-only failure makes it return at once.
const trailersOnlyWait = 100 * time.Millisecond

// ErrStop, returned by a WatchSteps callback, ends the stream without an error.
var ErrStop = stopError{}

type stopError struct{}

func (stopError) Error() string { return "stop watching" }

// ExportCheckpoint starts a Hugging Face export into destination (a path on the trainer; "" means
// <store-dir>/exports/step-<N>). With wait it returns once the export is done or failed.
func (c *Client) ExportCheckpoint(ctx context.Context, destination string, wait bool) (*trainerv1.Export, error) {
	res, err := c.Stub.ExportCheckpoint(ctx, &trainerv1.ExportCheckpointRequest{Destination: destination, Wait: wait})
	return res.GetExport(), wrapError("ExportCheckpoint", err)
}

// GetExport reports an export's progress, also of one started before the trainer restarted (one it was
// writing when it stopped is FAILED, "interrupted: ...").
func (c *Client) GetExport(ctx context.Context, exportID string) (*trainerv1.Export, error) {
	res, err := c.Stub.GetExport(ctx, &trainerv1.GetExportRequest{ExportId: exportID})
	return res.GetExport(), wrapError("GetExport", err)
}

// ListExports returns one page of the exports the trainer's store knows of, also those started before
// the trainer restarted, the newest first: only one state when req.State is set. Pass the answer's
// NextPageToken as req.PageToken, with the same req.State, to read on ("" at the end); AllExports reads
// every page.
func (c *Client) ListExports(ctx context.Context, req *trainerv1.ListExportsRequest) (*trainerv1.ListExportsResponse, error) {
	if req == nil {
		req = &trainerv1.ListExportsRequest{}
	}
	res, err := c.Stub.ListExports(ctx, req)
	return res, wrapError("ListExports", err)
}

// AllExports is ListExports page after page (req.PageToken is where it starts): every export it matches.
func (c *Client) AllExports(ctx context.Context, req *trainerv1.ListExportsRequest) ([]*trainerv1.Export, error) {
	page := &trainerv1.ListExportsRequest{}
	if req != nil {
		page.State, page.PageSize, page.PageToken = req.State, req.PageSize, req.PageToken
	}
	return allPages(page.PageToken, func(token string) ([]*trainerv1.Export, string, error) {
		page.PageToken = token
		res, err := c.ListExports(ctx, page)
		return res.GetExports(), res.GetNextPageToken(), err
	})
}

// allPages calls readPage with token, then with each answer's next page token until one is "": every
// item of every page, or those read before an error and the error.
func allPages[T any](token string, readPage func(token string) ([]T, string, error)) ([]T, error) {
	var out []T
	for {
		items, next, err := readPage(token)
		if err != nil {
			return out, err
		}
		out = append(out, items...)
		if next == "" {
			return out, nil
		}
		token = next
	}
}

// Pause asks the run to pause after the current step and returns the run's status.
func (c *Client) Pause(ctx context.Context) (*trainerv1.RunStatus, error) {
	res, err := c.Stub.PauseTraining(ctx, &trainerv1.PauseTrainingRequest{})
	return res.GetRun(), wrapError("PauseTraining", err)
}

// Resume resumes a paused run and returns the run's status.
func (c *Client) Resume(ctx context.Context) (*trainerv1.RunStatus, error) {
	res, err := c.Stub.ResumeTraining(ctx, &trainerv1.ResumeTrainingRequest{})
	return res.GetRun(), wrapError("ResumeTraining", err)
}

// ListBackends returns the reward registry, sorted by name, and its version.
func (c *Client) ListBackends(ctx context.Context) (*trainerv1.ListRewardBackendsResponse, error) {
	res, err := c.Stub.ListRewardBackends(ctx, &trainerv1.ListRewardBackendsRequest{})
	return res, wrapError("ListRewardBackends", err)
}

// SetBackend adds or replaces a reward backend; the next step uses it.
func (c *Client) SetBackend(ctx context.Context, backend *trainerv1.RewardBackend) (*trainerv1.SetRewardBackendResponse, error) {
	res, err := c.Stub.SetRewardBackend(ctx, &trainerv1.SetRewardBackendRequest{Backend: backend})
	return res, wrapError("SetRewardBackend", err)
}

// DeleteBackend removes a reward backend and returns the registry version after the change.
func (c *Client) DeleteBackend(ctx context.Context, name string) (int64, error) {
	res, err := c.Stub.DeleteRewardBackend(ctx, &trainerv1.DeleteRewardBackendRequest{Name: name})
	return res.GetRegistryVersion(), wrapError("DeleteRewardBackend", err)
}

// ListPrompts returns one page of the submitted prompts and where each is (queued, leased, trained,
// failed and why, cancelled), in submission order: only the given ids when req.Ids is set, only one state
// when req.State is set. Pass the answer's NextPageToken as req.PageToken to read on ("" at the end);
// AllPrompts reads every page.
func (c *Client) ListPrompts(ctx context.Context, req *trainerv1.ListPromptsRequest) (*trainerv1.ListPromptsResponse, error) {
	if req == nil {
		req = &trainerv1.ListPromptsRequest{}
	}
	res, err := c.Stub.ListPrompts(ctx, req)
	return res, wrapError("ListPrompts", err)
}

// IdsPerRequest is the most prompt ids one ListPrompts or CancelPrompts request takes.
const IdsPerRequest = 1000

// IdChunks splits ids into runs of at most IdsPerRequest, in order; no ids is one empty run (a listing of
// every prompt).
func IdChunks(ids []string) [][]string {
	if len(ids) == 0 {
		return [][]string{nil}
	}
	var out [][]string
	for start := 0; start < len(ids); start += IdsPerRequest {
		end := start + IdsPerRequest
		if end > len(ids) {
			end = len(ids)
		}
		out = append(out, ids[start:end])
	}
	return out
}

// AllPrompts is ListPrompts page after page (req.PageToken is where it starts): every prompt it matches.
// More than IdsPerRequest ids are asked IdsPerRequest at a time, each run's prompts in submission order,
// as the Python client's iter_prompts does; req.PageToken must then be empty (a page token belongs to
// one request).
func (c *Client) AllPrompts(ctx context.Context, req *trainerv1.ListPromptsRequest) ([]*trainerv1.PromptStatus, error) {
	page := &trainerv1.ListPromptsRequest{}
	if req != nil {
		page.Ids, page.State, page.PageSize, page.PageToken = req.Ids, req.State, req.PageSize, req.PageToken
	}
	chunks := IdChunks(page.Ids)
	if len(chunks) > 1 && page.PageToken != "" {
		return nil, fmt.Errorf("grpoclient: AllPrompts: a PageToken with %d ids: a page token belongs to one request of at most %d ids", len(page.Ids), IdsPerRequest)
	}
	var out []*trainerv1.PromptStatus
	for _, part := range chunks {
		page.Ids = part
		found, err := allPages(page.PageToken, func(token string) ([]*trainerv1.PromptStatus, string, error) {
			page.PageToken = token
			res, err := c.ListPrompts(ctx, page)
			return res.GetPrompts(), res.GetNextPageToken(), err
		})
		out = append(out, found...)
		if err != nil {
			return out, err
		}
		page.PageToken = ""
	}
	return out, nil
}

// CancelPrompts takes the queued prompts among ids (1 to IdsPerRequest, each once) out of the queue. The answer
// lists the ids it cancelled, where each other known id is (NotCancelled: LEASED, TRAINED, FAILED or
// CANCELLED before), the ids the trainer does not know (UnknownIds: never submitted, or deleted under
// retention.prompt_rows_seconds) and the queue depth.
func (c *Client) CancelPrompts(ctx context.Context, ids []string) (*trainerv1.CancelPromptsResponse, error) {
	res, err := c.Stub.CancelPrompts(ctx, &trainerv1.CancelPromptsRequest{Ids: ids})
	return res, wrapError("CancelPrompts", err)
}
