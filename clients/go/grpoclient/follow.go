package grpoclient

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// FollowOptions configure FollowSteps. The zero value follows finished steps, reconnects every 2 s and
// gives up after 10 minutes without an answer from the trainer.
type FollowOptions struct {
	// IncludeRunning also delivers a report when a step starts (state STEP_STATE_RUNNING).
	IncludeRunning bool
	// RetryInterval is the wait before each reconnect (default 2 s).
	RetryInterval time.Duration
	// GiveUpAfter: once the trainer has been UNAVAILABLE this long since it last answered, FollowSteps
	// returns that UNAVAILABLE *Error (default 10 minutes; negative: never give up). Any answer counts,
	// not only a report: a stream's response headers (a trainer sends them as soon as it accepts the
	// stream, idle or not) and a stream the trainer ended with status OK.
	GiveUpAfter time.Duration
	// OnReconnect, when set, is called with the reason before each reconnect.
	OnReconnect func(reason string)
}

// FollowSteps is WatchSteps that outlives trainer restarts. When the stream ends (the trainer drained)
// or the trainer is UNAVAILABLE, it calls opts.OnReconnect and opens a new stream after
// opts.RetryInterval, until the trainer answers again or opts.GiveUpAfter passes without an answer
// (counted from the first failure since the trainer last answered; a stream it accepted is an answer,
// even one that then stayed idle for hours).
//
// A restarted trainer resumes from its latest checkpoint and runs the steps after it again under the same
// numbers (their earlier reports turn FAILED, "lost: ..." or "abandoned: ..."). So each new stream starts
// after min(last finished step delivered, the run's checkpoint step), and a report already delivered
// (the same step, start time and state) is skipped: fn gets each report that changed once, the replaced
// ones included (docs/api.md, "StepStatus and WatchSteps"). A report's ForgottenThrough is nonzero only
// when retention deleted reports of steps after the last finished step delivered (or afterStep).
//
// A trainer serving as many streams as it takes (RESOURCE_EXHAUSTED with a retry delay) is asked again
// after that delay, without giving up.
//
// It returns nil when fn returns ErrStop or the Client is closed, fn's other errors as is, ctx.Err()
// when ctx ends, and the *Error of a failure other than UNAVAILABLE (such as UNAUTHENTICATED) at once.
func (c *Client) FollowSteps(ctx context.Context, afterStep int64, opts FollowOptions, fn func(*trainerv1.WatchStepsResponse) error) error {
	retry := opts.RetryInterval
	if retry <= 0 {
		retry = 2 * time.Second
	}
	giveUp := opts.GiveUpAfter
	if giveUp == 0 {
		giveUp = 10 * time.Minute
	}
	state := newFollowState(afterStep)
	var downSince time.Time // when the trainer was first UNAVAILABLE since it last answered; zero: up
	// The stream's headers come before any report, so resetting on them covers the reports too.
	answered := func() { downSince = time.Time{} }
	for {
		var fnErr error
		err := c.watch(ctx, state.resumeAfter(), opts.IncludeRunning, answered, func(r *trainerv1.WatchStepsResponse) error {
			if !state.admit(r) {
				return nil
			}
			fnErr = fn(r)
			return fnErr
		})
		switch {
		case fnErr == ErrStop:
			return nil
		case fnErr != nil:
			return fnErr
		case ctx.Err() != nil:
			return ctx.Err()
		case c.conn.GetState() == connectivity.Shutdown: // Close, during the stream or just after it
			return nil
		}
		var reason string
		wait := retry
		var busy *Error
		if err == nil {
			answered() // it ended the stream itself, with status OK
			reason = "the trainer ended the stream (it is shutting down)"
		} else if status.Code(err) == codes.ResourceExhausted && errors.As(err, &busy) && busy.RetryDelay > 0 {
			// Up, but serving as many streams as it takes (limits.max_watch_streams): an answer; wait its delay.
			answered()
			if busy.RetryDelay > wait {
				wait = busy.RetryDelay
			}
			reason = fmt.Sprintf("the trainer has no room for another stream now (%s)", busy.Message)
		} else {
			if status.Code(err) != codes.Unavailable {
				return err
			}
			now := time.Now()
			if downSince.IsZero() {
				downSince = now
			}
			if giveUp > 0 && now.Sub(downSince) >= giveUp {
				return err
			}
			reason = fmt.Sprintf("the trainer is unavailable (%s)", status.Convert(err).Message())
		}
		if opts.OnReconnect != nil {
			opts.OnReconnect(reason)
		}
		// grpc-go spaces its connection attempts with an exponential backoff (up to 2 minutes); start one
		// now, so the next stream finds the restarted trainer as soon as it listens.
		c.conn.ResetConnectBackoff()
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}

// followState is FollowSteps' bookkeeping, apart from the network: where the next stream starts and
// which reports a new stream may send again that were delivered already.
type followState struct {
	after          int64 // the caller's afterStep: it has the reports up to this step
	firstStarted   int64 // the start time (ns) of the follow's first report
	haveFirst      bool  // false until a report came
	last           int64 // the last finished step delivered (at first: the caller's afterStep)
	checkpoint     int64 // the run's checkpoint step in the latest response
	haveCheckpoint bool  // false until a response came
	// delivered holds, for each step a new stream may send again (above min(last, checkpoint)), the
	// report of it delivered last.
	delivered map[int64]reportKey
	gap       int64 // the highest ForgottenThrough a stream sent past last, not delivered yet
}

// reportKey tells two reports of one step apart: a new run of the step has a new start time.
type reportKey struct {
	startedAt int64 // nanoseconds since the Unix epoch
	state     trainerv1.StepState
}

func newFollowState(afterStep int64) *followState {
	return &followState{after: afterStep, last: afterStep, delivered: map[int64]reportKey{}}
}

// resumeAfter is the after_step of the next stream: min(last finished step delivered, checkpoint step),
// because a restart runs every step after the checkpoint again.
func (f *followState) resumeAfter() int64 {
	if f.haveCheckpoint && f.checkpoint < f.last {
		return f.checkpoint
	}
	return f.last
}

// admit records a response and says whether to deliver it (false: its report was delivered already).
// It sets the response's ForgottenThrough against what was delivered: a new stream starts at the
// checkpoint, maybe below the last step delivered, so a gap it reports may hold only delivered steps.
func (f *followState) admit(r *trainerv1.WatchStepsResponse) bool {
	report := r.GetStep()
	f.checkpoint, f.haveCheckpoint = r.GetRun().GetCheckpointStep(), true
	if r.GetForgottenThrough() > f.gap {
		f.gap = r.GetForgottenThrough()
	}
	ts := report.GetStartedAt()
	key := reportKey{startedAt: ts.GetSeconds()*int64(time.Second) + int64(ts.GetNanos()), state: report.GetState()}
	if seen, ok := f.delivered[report.GetStep()]; ok && seen == key {
		return false
	}
	if !f.haveFirst {
		f.firstStarted, f.haveFirst = key.startedAt, true
	}
	if f.hadBefore(report, key.startedAt) {
		return false
	}
	f.delivered[report.GetStep()] = key
	r.ForgottenThrough = 0
	if f.gap > f.last {
		r.ForgottenThrough = f.gap
	}
	f.gap = 0
	if report.GetState() != trainerv1.StepState_STEP_STATE_RUNNING {
		f.last = report.GetStep()
	}
	floor := f.resumeAfter()
	for step := range f.delivered {
		if step <= floor {
			delete(f.delivered, step) // no stream sends it again: the next one starts after it
		}
	}
	return true
}

// hadBefore is true for a report the caller had when it began following: of a step up to its afterStep,
// never delivered here, started before the follow's first report, and not a restart's notice that the
// step is lost. A stream resumed below afterStep (at the checkpoint) sends such reports.
func (f *followState) hadBefore(report *trainerv1.StepReport, startedAt int64) bool {
	if _, ok := f.delivered[report.GetStep()]; ok || report.GetStep() > f.after || startedAt > f.firstStarted {
		return false
	}
	return !(report.GetState() == trainerv1.StepState_STEP_STATE_FAILED && isRestartNotice(report.GetError()))
}

// isRestartNotice says whether a FAILED report's error is the one a restart gives the steps it runs again
// (the store's "lost: ..." and "abandoned: ...").
func isRestartNotice(err string) bool {
	return strings.HasPrefix(err, "lost:") || strings.HasPrefix(err, "abandoned:")
}
