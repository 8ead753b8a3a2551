package grpoclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// promptsTrainer answers ListPrompts from a fixed list, two prompts a page, and CancelPrompts as the
// trainer does: queued ids are cancelled, others reported, no ids is INVALID_ARGUMENT with a BadRequest.
type promptsTrainer struct {
	trainerv1.UnimplementedTrainerServiceServer
	prompts []*trainerv1.PromptStatus
	tokens  chan string // the authorization header of each call
}

func (p *promptsTrainer) token(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	p.tokens <- first(md.Get("authorization"))
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (p *promptsTrainer) ListPrompts(ctx context.Context, req *trainerv1.ListPromptsRequest) (*trainerv1.ListPromptsResponse, error) {
	p.token(ctx)
	if len(req.GetIds()) > 1000 {
		st, _ := status.New(codes.InvalidArgument, "invalid request: ids: at most 1000 ids").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "ids", Description: "at most 1000 ids"}}})
		return nil, st.Err()
	}
	asked := map[string]bool{}
	for _, id := range req.GetIds() {
		asked[id] = true
	}
	var match []*trainerv1.PromptStatus
	for _, s := range p.prompts {
		if (req.GetState() == trainerv1.PromptState_PROMPT_STATE_UNSPECIFIED || s.GetState() == req.GetState()) &&
			(len(asked) == 0 || asked[s.GetId()]) {
			match = append(match, s)
		}
	}
	start := 0
	if req.GetPageToken() != "" {
		start = len(req.GetPageToken()) // the token is "x" per prompt already sent
	}
	end := start + 2
	if end >= len(match) {
		return &trainerv1.ListPromptsResponse{Prompts: match[start:]}, nil
	}
	token := ""
	for i := 0; i < end; i++ {
		token += "x"
	}
	return &trainerv1.ListPromptsResponse{Prompts: match[start:end], NextPageToken: token}, nil
}

func (p *promptsTrainer) CancelPrompts(ctx context.Context, req *trainerv1.CancelPromptsRequest) (*trainerv1.CancelPromptsResponse, error) {
	p.token(ctx)
	if len(req.GetIds()) == 0 {
		st, _ := status.New(codes.InvalidArgument, "invalid request: ids: required").WithDetails(&errdetails.BadRequest{
			FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "ids", Description: "required: 1 to 1000 ids"}}})
		return nil, st.Err()
	}
	out := &trainerv1.CancelPromptsResponse{QueueDepth: 1}
	for _, id := range req.GetIds() {
		known := false
		for _, s := range p.prompts {
			if s.GetId() != id {
				continue
			}
			known = true
			if s.GetState() == trainerv1.PromptState_PROMPT_STATE_QUEUED {
				out.CancelledIds = append(out.CancelledIds, id)
			} else {
				out.NotCancelled = append(out.NotCancelled, s)
			}
		}
		if !known {
			out.UnknownIds = append(out.UnknownIds, id)
		}
	}
	return out, nil
}

func promptsClient(t *testing.T, p trainerv1.TrainerServiceServer) *Client {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	trainerv1.RegisterTrainerServiceServer(s, p)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, l.Addr().String(), Options{Token: "t0k"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestListPromptsReadsEveryPageWithTheToken(t *testing.T) {
	queued, trained := trainerv1.PromptState_PROMPT_STATE_QUEUED, trainerv1.PromptState_PROMPT_STATE_TRAINED
	p := &promptsTrainer{tokens: make(chan string, 16), prompts: []*trainerv1.PromptStatus{
		{Id: "a", State: trained}, {Id: "b", State: queued}, {Id: "c", State: trained},
		{Id: "d", State: queued}, {Id: "e", State: trained}}}
	c := promptsClient(t, p)
	ctx := context.Background()

	page, err := c.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.GetPrompts()) != 2 || page.GetNextPageToken() == "" {
		t.Fatalf("first page %v, want 2 prompts and a next page token", page)
	}
	if got := <-p.tokens; got != "Bearer t0k" {
		t.Fatalf("ListPrompts sent authorization %q", got)
	}
	all, err := c.AllPrompts(ctx, &trainerv1.ListPromptsRequest{State: trained})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range all {
		ids = append(ids, s.GetId())
	}
	if len(ids) != 3 || ids[0] != "a" || ids[1] != "c" || ids[2] != "e" {
		t.Fatalf("AllPrompts(TRAINED) = %v, want [a c e] across two pages", ids)
	}
}

func TestAllPromptsAsksMoreIdsThanOneRequestTakesInRuns(t *testing.T) {
	queued := trainerv1.PromptState_PROMPT_STATE_QUEUED
	p := &promptsTrainer{tokens: make(chan string, 64), prompts: []*trainerv1.PromptStatus{
		{Id: "a", State: queued}, {Id: "b", State: queued}, {Id: "c", State: queued}, {Id: "d", State: queued}}}
	c := promptsClient(t, p)
	ids := []string{"c", "a"} // run 1: a, c in submission order; run 2: d, b; run 3: none known
	for i := 0; i < 998; i++ {
		ids = append(ids, fmt.Sprintf("none%d", i))
	}
	ids = append(ids, "d", "b")
	for i := 0; i < 1000; i++ {
		ids = append(ids, fmt.Sprintf("late%d", i))
	}
	all, err := c.AllPrompts(context.Background(), &trainerv1.ListPromptsRequest{Ids: ids})
	if err != nil {
		t.Fatalf("AllPrompts(%d ids): %v", len(ids), err)
	}
	var got []string
	for _, s := range all {
		got = append(got, s.GetId())
	}
	if fmt.Sprint(got) != "[a c b d]" {
		t.Fatalf("AllPrompts(%d ids) = %v, want [a c b d]: each run of 1000 ids in submission order", len(ids), got)
	}
	if calls := len(p.tokens); calls != 3 {
		t.Fatalf("AllPrompts(%d ids) made %d ListPrompts calls, want 3", len(ids), calls)
	}
	_, err = c.AllPrompts(context.Background(), &trainerv1.ListPromptsRequest{Ids: ids, PageToken: "xx"})
	if err == nil || !strings.Contains(err.Error(), "a page token belongs to one request") {
		t.Fatalf("AllPrompts(%d ids, a page token) = %v, want an error naming the page token", len(ids), err)
	}
	if chunks := IdChunks(nil); len(chunks) != 1 || chunks[0] != nil {
		t.Fatalf("IdChunks(nil) = %v, want one empty run", chunks)
	}
}

func TestCancelPromptsReportsEachIdAndDecodesRejections(t *testing.T) {
	p := &promptsTrainer{tokens: make(chan string, 16), prompts: []*trainerv1.PromptStatus{
		{Id: "q", State: trainerv1.PromptState_PROMPT_STATE_QUEUED},
		{Id: "l", State: trainerv1.PromptState_PROMPT_STATE_LEASED, Step: 4}}}
	c := promptsClient(t, p)
	ctx := context.Background()

	res, err := c.CancelPrompts(ctx, []string{"q", "l", "never"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.GetCancelledIds()) != 1 || res.GetCancelledIds()[0] != "q" ||
		len(res.GetNotCancelled()) != 1 || res.GetNotCancelled()[0].GetStep() != 4 ||
		len(res.GetUnknownIds()) != 1 || res.GetUnknownIds()[0] != "never" {
		t.Fatalf("unexpected answer %v", res)
	}

	_, err = c.CancelPrompts(ctx, nil)
	var e *Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || e.Method != "CancelPrompts" ||
		len(e.FieldViolations) != 1 || e.FieldViolations[0].Field != "ids" {
		t.Fatalf("CancelPrompts(nil) = %v, want an INVALID_ARGUMENT *Error naming ids", err)
	}
}
