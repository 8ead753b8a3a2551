package main

// backends set and delete, prompts, cancel and exports: the Python CLI's `grpo backends set`, `grpo
// backends delete`, `grpo prompts`, `grpo cancel` and `grpo exports` with the same flags (Go's flag package takes them with one dash
// or two, before or after the positional arguments), the same lines and, with -json, the same JSON
// document (protobuf messages in their JSON mapping with the proto field names, in the proto's field
// order). A failure is reported as `grpo` reports it (callFailure, usageLine: with -json as its error
// document) and exits as `grpo` does: 2 for a bad command line or INVALID_ARGUMENT, else 1.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/golang/protobuf/jsonpb"
	"github.com/golang/protobuf/proto"
	trainerv1 "github.com/grpo-service/grpo/clients/go/gen/grpo/trainer/v1"
	"github.com/grpo-service/grpo/clients/go/grpoclient"
)

// adminCommand is a parsed backends set or delete, prompts, cancel or exports, run once connected; it returns the
// exit status.
type adminCommand interface {
	run(ctx context.Context, c *grpoclient.Client, timeout time.Duration) int
}

// parseAdmin parses the command line of backends set or delete, prompts, cancel or exports. It returns the command to run
// and -1; nil and -1 for another command (backends and backends list included); or nil and the exit
// status when there is nothing to call: a bad command line (2), -h (0), a cancel -file without prompts (0).
func parseAdmin(cmd string, rest []string) (adminCommand, int) {
	var admin adminCommand
	var code int
	switch {
	case cmd == "prompts":
		admin, code = parsePrompts(rest)
	case cmd == "cancel":
		admin, code = parseCancel(rest)
	case cmd == "exports":
		admin, code = parseExports(rest)
	case cmd != "backends" || len(rest) == 0 || (rest[0] == "list" && len(rest) == 1):
		return nil, -1
	case rest[0] == "set":
		admin, code = parseBackendsSet(rest[1:])
	case rest[0] == "delete":
		admin, code = parseBackendsDelete(rest[1:])
	default:
		return nil, usageLine(wantsJSON(rest), "backends: %q is not an action; give list, set or delete",
			strings.Join(rest, " "))
	}
	if admin == nil {
		return nil, code
	}
	if c, ok := admin.(*cancelCommand); ok && len(c.ids) == 0 {
		return nil, c.printEmpty()
	}
	return admin, -1
}

// parseInterspersed parses fs over args and returns the positional arguments, letting flags follow them
// as argparse does (`cancel a b -file f.jsonl`); after "--" every argument is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageLine reports one usage problem of a command ("error: ..." on stderr, and with -json the USAGE
// document on stdout) and returns exit status 2.
func usageLine(asJSON bool, format string, a ...interface{}) int {
	return usageFailure(asJSON, fmt.Sprintf(format, a...), false)
}

// parseStatus is the exit status of the command line args the flag package refused: 0 for -h, else 2
// (the flag package has printed the problem and the command's flags; with -json in args the USAGE
// document follows on stdout).
func parseStatus(err error, args []string) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return usageFailure(wantsJSON(args), err.Error(), true)
}

// ------------------------------------------------------------------------------------- backends set

type backendsSetCommand struct {
	backend *trainerv1.RewardBackend
	json    bool
}

const int32Max = 1<<31 - 1

func parseBackendsSet(args []string) (adminCommand, int) {
	fs := flag.NewFlagSet("backends set", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: grpo-go-example backends set NAME HOST:PORT [flags]")
		fs.PrintDefaults()
	}
	timeout := fs.Float64("timeout", 0, "Score deadline in seconds (default: the trainer's, 30)")
	maxBatch := fs.Int64("max-batch", 0, "items per call (default: the backend's)")
	maxConcurrency := fs.Int64("max-concurrency", 0, "calls in flight (default: 4)")
	backendTLS := fs.Bool("backend-tls", false, "the trainer connects to the backend with TLS")
	tokenFile := fs.String("backend-token-file", "", "token file on the trainer for the backend")
	caFile := fs.String("backend-ca-file", "", "with -backend-tls: PEM roots on the trainer that verify the backend (default: gRPC's)")
	certFile := fs.String("backend-cert-file", "", "with -backend-tls: the trainer's client certificate (PEM, on the trainer), for mTLS")
	keyFile := fs.String("backend-key-file", "", "with -backend-tls: the private key of -backend-cert-file (PEM, on the trainer)")
	asJSON := fs.Bool("json", false, "print exactly one JSON document")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, parseStatus(err, args)
	}
	if len(pos) != 2 {
		return nil, usageLine(*asJSON, "backends set: give NAME and HOST:PORT (got %s)", grpoclient.Counted(len(pos), "argument"))
	}
	if math.IsNaN(*timeout) || math.IsInf(*timeout, 0) || *timeout < 0 {
		return nil, usageLine(*asJSON, "backends set: -timeout: %v is not a finite number of seconds >= 0", *timeout)
	}
	for _, f := range []struct {
		name  string
		value int64
	}{{"-max-batch", *maxBatch}, {"-max-concurrency", *maxConcurrency}} {
		if f.value < 0 || f.value > int32Max {
			return nil, usageLine(*asJSON, "backends set: %s: %d is out of range; give a whole number from 0 to %d", f.name, f.value, int32Max)
		}
	}
	return &backendsSetCommand{json: *asJSON, backend: &trainerv1.RewardBackend{
		Name: pos[0], Address: pos[1], TimeoutSeconds: *timeout, MaxBatchSize: int32(*maxBatch),
		MaxConcurrency: int32(*maxConcurrency), Tls: *backendTLS, TokenFile: *tokenFile, CaFile: *caFile,
		CertFile: *certFile, KeyFile: *keyFile,
	}}, 0
}

func (b *backendsSetCommand) run(ctx context.Context, c *grpoclient.Client, timeout time.Duration) int {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stored, err := c.SetBackend(cctx, b.backend)
	if err != nil {
		return callFailure(b.json, err)
	}
	if b.json {
		return printDocument(stored)
	}
	fmt.Printf("set %s -> %s (registry version %d)\n", stored.GetBackend().GetName(), stored.GetBackend().GetAddress(),
		stored.GetRegistryVersion())
	return 0
}

// ---------------------------------------------------------------------------------- backends delete

type backendsDeleteCommand struct {
	name string
	json bool
}

func parseBackendsDelete(args []string) (adminCommand, int) {
	fs := flag.NewFlagSet("backends delete", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: grpo-go-example backends delete NAME [-json]")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print exactly one JSON document")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, parseStatus(err, args)
	}
	if len(pos) != 1 {
		return nil, usageLine(*asJSON, "backends delete: give NAME (got %s)", grpoclient.Counted(len(pos), "argument"))
	}
	return &backendsDeleteCommand{name: pos[0], json: *asJSON}, 0
}

func (b *backendsDeleteCommand) run(ctx context.Context, c *grpoclient.Client, timeout time.Duration) int {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	version, err := c.DeleteBackend(cctx, b.name)
	if err != nil {
		return callFailure(b.json, err)
	}
	if b.json { // as `grpo backends list` and `set` print it: int64 is a JSON string
		return printJSON(struct {
			RegistryVersion string `json:"registry_version"`
		}{strconv.FormatInt(version, 10)})
	}
	fmt.Printf("deleted %s (registry version %d)\n", b.name, version)
	return 0
}

// ------------------------------------------------------------------------------------------- prompts

var promptStates = []string{"queued", "leased", "trained", "failed", "cancelled"}

type promptsCommand struct {
	ids   []string
	state string // "" = any
	limit int64
	json  bool
}

func parsePrompts(args []string) (adminCommand, int) {
	fs := flag.NewFlagSet("prompts", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: grpo-go-example prompts [ID ...] [flags]")
		fs.PrintDefaults()
	}
	state := fs.String("state", "", "only prompts in this state: "+strings.Join(promptStates, ", "))
	limit := fs.Int64("limit", 0, "show at most N prompts (0 = all)")
	asJSON := fs.Bool("json", false, "print exactly one JSON document")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, parseStatus(err, args)
	}
	if *state != "" && !contains(promptStates, *state) {
		return nil, usageLine(*asJSON, "prompts: -state: %q is not a prompt state; give one of %s", *state, strings.Join(promptStates, ", "))
	}
	if *limit < 0 {
		return nil, usageLine(*asJSON, "prompts: -limit: %d is too small; give a whole number >= 0", *limit)
	}
	return &promptsCommand{ids: ids, state: *state, limit: *limit, json: *asJSON}, 0
}

func (p *promptsCommand) run(ctx context.Context, c *grpoclient.Client, timeout time.Duration) int {
	req := &trainerv1.ListPromptsRequest{Ids: p.ids, PageSize: pageSize(p.limit)}
	if p.state != "" {
		req.State = trainerv1.PromptState(trainerv1.PromptState_value["PROMPT_STATE_"+strings.ToUpper(p.state)])
	}
	// More ids than one request takes are asked grpoclient.IdsPerRequest at a time, as `grpo prompts` does.
	var found []*trainerv1.PromptStatus
	for _, part := range grpoclient.IdChunks(p.ids) {
		left := int64(0) // no limit
		if p.limit > 0 {
			left = p.limit - int64(len(found))
		}
		req.Ids = part
		more, err := firstOfPages(ctx, timeout, left, func(cctx context.Context, token string) ([]*trainerv1.PromptStatus, string, error) {
			req.PageToken = token
			page, err := c.ListPrompts(cctx, req)
			return page.GetPrompts(), page.GetNextPageToken(), err
		})
		if err != nil {
			return callFailure(p.json, err)
		}
		found = append(found, more...)
		if p.limit > 0 && int64(len(found)) >= p.limit {
			break
		}
	}
	if p.json {
		return printList("prompts", found)
	}
	if len(found) == 0 && (len(p.ids) == 0 || p.state != "" || p.limit > 0) { // with ids and neither: `unknown:` says it
		if p.state != "" {
			fmt.Printf("no %s prompts\n", p.state)
		} else {
			fmt.Println("no prompts (none submitted, or deleted under retention.prompt_rows_seconds)")
		}
		return 0
	}
	const row = "%-24s %-8s %6s %10s %8d  %s\n"
	fmt.Printf(strings.Replace(row, "%8d", "%8s", 1), "id", "state", "step", "checkpoint", "attempts", "reason")
	seen := map[string]bool{}
	for _, s := range found {
		seen[s.GetId()] = true
		fmt.Printf(row, s.GetId(), enumName(s.GetState().String(), "PROMPT_STATE_"), orDash(s.GetStep()),
			orDash(s.GetCheckpointStep()), s.GetAttempts(), s.GetReason())
	}
	var missing []string
	for _, id := range p.ids {
		if !seen[id] && !contains(missing, id) {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 && p.state == "" && p.limit == 0 {
		fmt.Printf("unknown: %s (never submitted, or deleted under retention.prompt_rows_seconds)\n", strings.Join(missing, ", "))
	}
	return 0
}

// -------------------------------------------------------------------------------------------- cancel

type cancelCommand struct {
	ids  []string
	file string // -file as given ("" = none)
	json bool
}

func parseCancel(args []string) (adminCommand, int) {
	fs := flag.NewFlagSet("cancel", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: grpo-go-example cancel [ID ...] [-file FILE.jsonl] [-json]")
		fs.PrintDefaults()
	}
	file := fs.String("file", "", "also every prompt id of this prompt file")
	asJSON := fs.Bool("json", false, "print exactly one JSON document")
	ids, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, parseStatus(err, args)
	}
	if len(ids) == 0 && *file == "" {
		return nil, usageLine(*asJSON, "cancel: name the prompts to cancel: IDs, or -file FILE.jsonl")
	}
	if *file != "" {
		// The whole file first, as submit-file reads it: a bad file cancels nothing and needs no trainer.
		f, status := loadPromptFile(*file, *asJSON)
		if f == nil {
			return nil, status
		}
		for _, p := range f.Prompts {
			ids = append(ids, p.GetId())
		}
	}
	var unique []string // each once, in order
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unique = append(unique, id)
		}
	}
	return &cancelCommand{ids: unique, file: *file, json: *asJSON}, 0
}

// printEmpty reports a prompt file without prompts (and no IDs) as `grpo cancel` does, without a trainer:
// the trainer was not asked, so its queue depth is null.
func (c *cancelCommand) printEmpty() int {
	if c.json {
		return printJSON(json.RawMessage(`{"cancelled_ids":[],"not_cancelled":[],"unknown_ids":[],"queue_depth":null}`))
	}
	fmt.Printf("%s holds no prompts: nothing to cancel\n", c.file)
	return 0
}

func (c *cancelCommand) run(ctx context.Context, client *grpoclient.Client, timeout time.Duration) int {
	// Any number of ids, grpoclient.IdsPerRequest at a time, the answers merged into one (its queue depth from the
	// last call), as the Python client's cancel_all does.
	res := &trainerv1.CancelPromptsResponse{}
	for _, ids := range grpoclient.IdChunks(c.ids) {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		part, err := client.CancelPrompts(cctx, ids)
		cancel()
		if err != nil {
			return callFailure(c.json, err)
		}
		res.CancelledIds = append(res.CancelledIds, part.GetCancelledIds()...)
		res.NotCancelled = append(res.NotCancelled, part.GetNotCancelled()...)
		res.UnknownIds = append(res.UnknownIds, part.GetUnknownIds()...)
		res.QueueDepth = part.GetQueueDepth()
	}
	code := 0
	for _, p := range res.GetNotCancelled() {
		if p.GetState() != trainerv1.PromptState_PROMPT_STATE_CANCELLED {
			code = 1
		}
	}
	if len(res.GetUnknownIds()) > 0 {
		code = 1
	}
	if c.json {
		if printDocument(res) != 0 {
			return 1
		}
		return code
	}
	fmt.Printf("cancelled %s; queue depth %d\n", grpoclient.Counted(len(res.GetCancelledIds()), "queued prompt"), res.GetQueueDepth())
	for _, p := range res.GetNotCancelled() {
		var why string
		switch p.GetState() {
		case trainerv1.PromptState_PROMPT_STATE_LEASED:
			// A leased prompt stays held by its step until a checkpoint covers it, after the step too.
			why = fmt.Sprintf("held by step %d: in training, or trained and not yet in a checkpoint", p.GetStep())
		case trainerv1.PromptState_PROMPT_STATE_TRAINED:
			why = fmt.Sprintf("trained, in checkpoint %d", p.GetCheckpointStep())
		case trainerv1.PromptState_PROMPT_STATE_FAILED:
			why = "failed"
		case trainerv1.PromptState_PROMPT_STATE_CANCELLED:
			why = "cancelled before"
		default:
			why = "not queued"
		}
		fmt.Printf("not cancelled: %s: %s (%s)\n", p.GetId(), enumName(p.GetState().String(), "PROMPT_STATE_"), why)
	}
	if len(res.GetUnknownIds()) > 0 {
		fmt.Printf("unknown: %s (never submitted, or deleted under retention.prompt_rows_seconds)\n", strings.Join(res.GetUnknownIds(), ", "))
	}
	return code
}

// ------------------------------------------------------------------------------------------- exports

var exportStates = []string{"pending", "writing", "done", "failed"}

type exportsCommand struct {
	state string // "" = any
	limit int64
	json  bool
}

func parseExports(args []string) (adminCommand, int) {
	fs := flag.NewFlagSet("exports", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: grpo-go-example exports [flags]")
		fs.PrintDefaults()
	}
	state := fs.String("state", "", "only exports in this state: "+strings.Join(exportStates, ", "))
	limit := fs.Int64("limit", 0, "show at most N exports (0 = all)")
	asJSON := fs.Bool("json", false, "print exactly one JSON document")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, parseStatus(err, args)
	}
	if len(pos) > 0 {
		return nil, usageLine(*asJSON, "exports: unrecognized arguments: %s", strings.Join(pos, " "))
	}
	if *state != "" && !contains(exportStates, *state) {
		return nil, usageLine(*asJSON, "exports: -state: %q is not an export state; give one of %s", *state, strings.Join(exportStates, ", "))
	}
	if *limit < 0 {
		return nil, usageLine(*asJSON, "exports: -limit: %d is too small; give a whole number >= 0", *limit)
	}
	return &exportsCommand{state: *state, limit: *limit, json: *asJSON}, 0
}

func (e *exportsCommand) run(ctx context.Context, c *grpoclient.Client, timeout time.Duration) int {
	req := &trainerv1.ListExportsRequest{PageSize: pageSize(e.limit)}
	if e.state != "" {
		req.State = trainerv1.ExportState(trainerv1.ExportState_value["EXPORT_STATE_"+strings.ToUpper(e.state)])
	}
	found, err := firstOfPages(ctx, timeout, e.limit, func(cctx context.Context, token string) ([]*trainerv1.Export, string, error) {
		req.PageToken = token
		page, err := c.ListExports(cctx, req)
		return page.GetExports(), page.GetNextPageToken(), err
	})
	if err != nil {
		return callFailure(e.json, err)
	}
	if e.json {
		return printList("exports", found)
	}
	if len(found) == 0 {
		if e.state != "" {
			fmt.Printf("no %s exports\n", e.state)
		} else {
			fmt.Println("no exports (start one with `grpo export`)")
		}
		return 0
	}
	const row = "%-16s %-7s %6v %5s  %-20s  %s\n"
	fmt.Printf(row, "id", "state", "step", "done", "started (UTC)", "destination")
	for _, x := range found {
		started := "-"
		if ts := x.GetStartedAt(); ts != nil {
			started = time.Unix(ts.GetSeconds(), 0).UTC().Format("2006-01-02T15:04:05Z")
		}
		destination := x.GetDestination()
		if x.GetError() != "" {
			destination += "  (" + x.GetError() + ")"
		}
		fmt.Printf(row, x.GetExportId(), enumName(x.GetState().String(), "EXPORT_STATE_"), x.GetStep(),
			percent(x.GetProgress()), started, destination)
	}
	return 0
}

// percent is a fraction as Python's f"{p:.0%}" writes it: times 100, no decimals ("100%", "50%").
func percent(p float64) string {
	return strconv.FormatFloat(p*100, 'f', 0, 64) + "%"
}

// ----------------------------------------------------------------------------------------- printing

// protoJSON is m in the protobuf JSON mapping as the Python CLI prints it (json_format.MessageToDict with
// proto field names, fields without presence included): int64 as strings, enums by name, unset message
// fields left out, and the members of each object in Python's order: first the fields that are set, by
// field number, then those at their defaults. jsonpb orders fields as the proto declares them, so the
// set fields come from a marshal without defaults and the rest from one with them (where an unset
// message field is null: left out).
// pageSize is the page size `grpo` asks for with --limit N: N, at most 1000; 0 (the trainer's) for all.
func pageSize(limit int64) int32 {
	if limit > 1000 {
		return 1000
	}
	return int32(limit)
}

// firstOfPages reads page after page as `grpo prompts` and `grpo exports` do, each call with its own
// timeout: every item, or the first `limit` (0: all) with no further page read once they have come.
func firstOfPages[T any](ctx context.Context, timeout time.Duration, limit int64,
	read func(ctx context.Context, token string) ([]T, string, error)) ([]T, error) {
	var found []T
	token := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		items, next, err := read(cctx, token)
		cancel()
		if err != nil {
			return nil, err
		}
		found = append(found, items...)
		if limit > 0 && int64(len(found)) >= limit {
			return found[:limit], nil
		}
		if next == "" {
			return found, nil
		}
		token = next
	}
}

// printList prints `{"KEY": [message, ...]}` as `grpo --json` does (each message in protoJSON's form).
func printList[M proto.Message](key string, messages []M) int {
	items := make([]json.RawMessage, len(messages))
	for i, m := range messages {
		raw, err := protoJSON(m)
		if err != nil {
			fmt.Fprintf(os.Stderr, "error: %v\n", err)
			return 1
		}
		items[i] = raw
	}
	return printJSON(map[string][]json.RawMessage{key: items})
}

func protoJSON(m proto.Message) (json.RawMessage, error) {
	var set, all bytes.Buffer
	if err := (&jsonpb.Marshaler{OrigName: true}).Marshal(&set, m); err != nil {
		return nil, err
	}
	if err := (&jsonpb.Marshaler{OrigName: true, EmitDefaults: true}).Marshal(&all, m); err != nil {
		return nil, err
	}
	return pythonOrder(set.Bytes(), all.Bytes())
}

// member is one member of a JSON object, its value as written.
type member struct {
	key   string
	value json.RawMessage
}

// jsonItems splits a JSON object into its members (in order) or an array into its elements (key "");
// ok is false for any other value (or nil).
func jsonItems(raw []byte) (items []member, object, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || (raw[0] != '{' && raw[0] != '[') {
		return nil, false, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, false, false, err
	}
	object = raw[0] == '{'
	for dec.More() {
		var it member
		if object {
			tok, err := dec.Token()
			if err != nil {
				return nil, false, false, err
			}
			it.key, _ = tok.(string)
		}
		if err := dec.Decode(&it.value); err != nil {
			return nil, false, false, err
		}
		items = append(items, it)
	}
	return items, object, true, nil
}

// pythonOrder is the JSON value all (jsonpb with defaults) with each object's members reordered: first
// those set (present in set, the same value without defaults, an empty list counting as unset), then the
// others in all's order, null members left out.
func pythonOrder(set, all []byte) (json.RawMessage, error) {
	allItems, object, ok, err := jsonItems(all)
	if err != nil {
		return nil, err
	}
	if !ok {
		var out bytes.Buffer
		err := json.Compact(&out, all)
		return out.Bytes(), err
	}
	setItems, _, _, err := jsonItems(set)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	write := func(key string, value json.RawMessage) {
		if out.Len() > 0 {
			out.WriteByte(',')
		}
		if object {
			k, _ := json.Marshal(key)
			out.Write(k)
			out.WriteByte(':')
		}
		out.Write(value)
	}
	if !object { // a list: element by element
		for i, it := range allItems {
			var s json.RawMessage
			if i < len(setItems) {
				s = setItems[i].value
			}
			v, err := pythonOrder(s, it.value)
			if err != nil {
				return nil, err
			}
			write("", v)
		}
		return append(append([]byte{'['}, out.Bytes()...), ']'), nil
	}
	index := map[string]json.RawMessage{}
	for _, it := range allItems {
		index[it.key] = it.value
	}
	done := map[string]bool{}
	for _, it := range setItems {
		if string(bytes.TrimSpace(it.value)) == "[]" {
			continue // an empty list is unset: MessageToDict lists it with the defaults
		}
		v, err := pythonOrder(it.value, index[it.key])
		if err != nil {
			return nil, err
		}
		write(it.key, v)
		done[it.key] = true
	}
	for _, it := range allItems {
		if done[it.key] || string(bytes.TrimSpace(it.value)) == "null" {
			continue
		}
		v, err := pythonOrder(nil, it.value)
		if err != nil {
			return nil, err
		}
		write(it.key, v)
	}
	return append(append([]byte{'{'}, out.Bytes()...), '}'), nil
}

// printDocument prints m as one JSON document (protoJSON, indented by 2 as `grpo --json` does).
func printDocument(m proto.Message) int {
	raw, err := protoJSON(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	return printJSON(raw)
}

// printJSON prints v (a json.RawMessage keeps its members' order) indented by 2 spaces.
func printJSON(v interface{}) int {
	compact, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		return 1
	}
	out.WriteByte('\n')
	os.Stdout.Write(out.Bytes())
	return 0
}

// enumName is an enum value's name without its prefix, in lower case ("PROMPT_STATE_QUEUED" -> "queued").
func enumName(name, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(name, prefix))
}

// orDash is n, or "-" for 0 (a step or checkpoint a prompt has not had).
func orDash(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
