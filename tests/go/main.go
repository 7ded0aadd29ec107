// Command goclient drives the official Go Firestore client (gRPC) against a
// Firestore gRPC endpoint: firegate's emulator, or firegate in front of it.
//
//	FIRESTORE_EMULATOR_HOST=127.0.0.1:8081 goclient --project demo --prefix run1
//	goclient --endpoint 127.0.0.1:8443 --tls-root ca.pem --token JWT ...
//
// With FIRESTORE_EMULATOR_HOST the client speaks plaintext and sends `Bearer
// owner`; --token replaces it. With --endpoint it speaks TLS (trusting
// --tls-root) and sends --token as call credentials. --deny names steps
// expected to be refused with PERMISSION_DENIED. Prints one JSON line per
// step; exits 1 if any expectation failed. Steps run in order and later ones
// read what earlier ones wrote.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode"

	"cloud.google.com/go/firestore"
	"golang.org/x/oauth2"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

var allSteps = []string{"set", "get", "update", "delete", "query", "aggregate", "batch",
	"transaction", "listCollections", "watchDocument", "watchQuery", "cleanup"}

// wait is how long a listener may take to hear a change; generous for a
// loaded CI box.
const wait = 20 * time.Second

// expectation is a step's finding, as opposed to an error the client raised.
type expectation struct{ message string }

func (e expectation) Error() string { return e.message }

func expect(condition bool, format string, args ...any) error {
	if condition {
		return nil
	}
	return expectation{fmt.Sprintf(format, args...)}
}

func same(actual, wanted any, what string) error {
	return expect(reflect.DeepEqual(actual, wanted), "%s: got %#v, want %#v", what, actual, wanted)
}

func refused(wanted codes.Code, err error, what string) error {
	if err == nil {
		return expectation{fmt.Sprintf("%s: want %s, but it succeeded", what, wanted)}
	}
	var e expectation
	if errors.As(err, &e) {
		return err
	}
	return same(status.Code(err), wanted, what)
}

type options struct {
	endpoint, tlsRoot, token, project, prefix, steps, deny string
}

func connect(ctx context.Context, o options) (*firestore.Client, error) {
	if host := os.Getenv("FIRESTORE_EMULATOR_HOST"); host != "" {
		if o.token == "" {
			return firestore.NewClient(ctx, o.project)
		}
		// In emulator mode the client dials its own connection whose call
		// credentials are always `Bearer owner`; a connection given as an
		// option wins over it, and this one's interceptors send the caller's
		// token in that header instead.
		conn, err := grpc.NewClient(host,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(withToken(ctx, o.token), method, req, reply, cc, opts...)
			}),
			grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(withToken(ctx, o.token), desc, cc, method, opts...)
			}))
		if err != nil {
			return nil, err
		}
		return firestore.NewClient(ctx, o.project, option.WithGRPCConn(conn))
	}
	tls, err := credentials.NewClientTLSFromFile(o.tlsRoot, "")
	if err != nil {
		return nil, err
	}
	token := &oauth2.Token{AccessToken: o.token, TokenType: "Bearer", Expiry: time.Now().Add(time.Hour)}
	return firestore.NewClient(ctx, o.project,
		option.WithEndpoint(o.endpoint),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(tls)),
		option.WithTokenSource(oauth2.StaticTokenSource(token)))
}

// withToken sets the call's authorization metadata to the caller's token,
// replacing any the context carried.
func withToken(ctx context.Context, token string) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set("authorization", "Bearer "+token)
	return metadata.NewOutgoingContext(ctx, md)
}

// codeName is a gRPC code's canonical name (FAILED_PRECONDITION), as the
// other drivers print it.
func codeName(c codes.Code) string {
	var b strings.Builder
	lower := false
	for _, r := range c.String() {
		if lower && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		lower = unicode.IsLower(r)
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// events collects what a listener delivered, waited on by the step.
type events[T any] struct {
	ch     chan T
	errs   chan error
	cancel context.CancelFunc
}

func listen[T any](ctx context.Context, next func(context.Context) func() (T, error)) *events[T] {
	ctx, cancel := context.WithCancel(ctx)
	e := &events[T]{ch: make(chan T, 64), errs: make(chan error, 1), cancel: cancel}
	step := next(ctx)
	go func() {
		for {
			snap, err := step()
			if err != nil {
				if ctx.Err() == nil {
					e.errs <- err
				}
				return
			}
			e.ch <- snap
		}
	}()
	return e
}

func (e *events[T]) waitFor(predicate func(T) bool, what string) error {
	deadline := time.After(wait)
	others := 0
	for {
		select {
		case snap := <-e.ch:
			if predicate(snap) {
				return nil
			}
			others++
		case err := <-e.errs:
			return err
		case <-deadline:
			return expectation{fmt.Sprintf("%s: no such snapshot within %s (%d others)", what, wait, others)}
		}
	}
}

func changes(s *firestore.QuerySnapshot) []string {
	out := []string{}
	for _, c := range s.Changes {
		kind := map[firestore.DocumentChangeKind]string{
			firestore.DocumentAdded: "ADDED", firestore.DocumentModified: "MODIFIED", firestore.DocumentRemoved: "REMOVED",
		}[c.Kind]
		out = append(out, kind+" "+c.Doc.Ref.ID)
	}
	sort.Strings(out)
	return out
}

func ids(docs []*firestore.DocumentSnapshot) []string {
	out := []string{}
	for _, d := range docs {
		out = append(out, d.Ref.ID)
	}
	return out
}

func collectionIDs(it *firestore.CollectionIterator) ([]string, error) {
	cols, err := it.GetAll()
	out := []string{}
	for _, c := range cols {
		out = append(out, c.ID)
	}
	return out, err
}

func steps(ctx context.Context, db *firestore.Client, prefix string) map[string]func() error {
	col := db.Collection(prefix + "_go")
	alpha, nope := col.Doc("alpha"), col.Doc("nope")
	sub := prefix + "_go_sub"
	n := func(ref *firestore.DocumentRef) (any, error) {
		snap, err := ref.Get(ctx)
		if err != nil {
			return nil, err
		}
		return snap.Data()["n"], nil
	}

	return map[string]func() error{
		"set": func() error {
			if _, err := alpha.Set(ctx, map[string]any{"name": "alpha", "n": 1, "tags": []any{"x"}, "nested": map[string]any{"a": true}}); err != nil {
				return err
			}
			if _, err := col.Doc("beta").Set(ctx, map[string]any{"name": "beta", "n": 2}); err != nil {
				return err
			}
			_, err := col.Doc("gamma").Set(ctx, map[string]any{"name": "gamma", "n": 3})
			return err
		},
		"get": func() error {
			snap, err := alpha.Get(ctx)
			if err != nil {
				return err
			}
			want := map[string]any{"name": "alpha", "n": int64(1), "tags": []any{"x"}, "nested": map[string]any{"a": true}}
			if err := same(snap.Data(), want, "alpha"); err != nil {
				return err
			}
			missing, err := nope.Get(ctx)
			if err := refused(codes.NotFound, err, "get of a missing document"); err != nil {
				return err
			}
			if err := expect(!missing.Exists(), "a missing document does not exist"); err != nil {
				return err
			}
			all, err := db.GetAll(ctx, []*firestore.DocumentRef{alpha, nope})
			if err != nil {
				return err
			}
			got := map[string]bool{}
			for _, s := range all {
				got[s.Ref.ID] = s.Exists()
			}
			return same(got, map[string]bool{"alpha": true, "nope": false}, "GetAll")
		},
		"update": func() error {
			before, err := alpha.Get(ctx)
			if err != nil {
				return err
			}
			if _, err := alpha.Update(ctx, []firestore.Update{{Path: "n", Value: 10}}, firestore.LastUpdateTime(before.UpdateTime)); err != nil {
				return err
			}
			_, err = alpha.Update(ctx, []firestore.Update{{Path: "n", Value: 99}}, firestore.LastUpdateTime(before.UpdateTime))
			if err := refused(codes.FailedPrecondition, err, "stale LastUpdateTime"); err != nil {
				return err
			}
			_, err = nope.Update(ctx, []firestore.Update{{Path: "n", Value: 1}})
			if err := refused(codes.NotFound, err, "update of a missing document"); err != nil {
				return err
			}
			_, err = alpha.Create(ctx, map[string]any{"n": 0})
			if err := refused(codes.AlreadyExists, err, "create over an existing document"); err != nil {
				return err
			}
			got, err := n(alpha)
			if err != nil {
				return err
			}
			return same(got, int64(10), "alpha.n after update")
		},
		"delete": func() error {
			if _, err := col.Doc("gamma").Delete(ctx); err != nil {
				return err
			}
			_, err := col.Doc("gamma").Get(ctx)
			return refused(codes.NotFound, err, "gamma is gone")
		},
		"query": func() error {
			top, err := col.Where("n", ">=", 2).OrderBy("n", firestore.Desc).Limit(1).Documents(ctx).GetAll()
			if err != nil {
				return err
			}
			if err := same(ids(top), []string{"alpha"}, "n >= 2 desc limit 1"); err != nil {
				return err
			}
			both, err := col.Where("n", ">=", 2).OrderBy("n", firestore.Asc).Documents(ctx).GetAll()
			if err != nil {
				return err
			}
			pairs := []string{}
			for _, d := range both {
				pairs = append(pairs, fmt.Sprintf("%s=%v", d.Ref.ID, d.Data()["n"]))
			}
			if err := same(pairs, []string{"beta=2", "alpha=10"}, "n >= 2 asc"); err != nil {
				return err
			}
			tagged, err := col.Where("tags", "array-contains", "x").Documents(ctx).GetAll()
			if err != nil {
				return err
			}
			return same(ids(tagged), []string{"alpha"}, "array-contains")
		},
		"aggregate": func() error {
			all, err := col.NewAggregationQuery().WithCount("all").WithSum("n", "total").WithAvg("n", "mean").Get(ctx)
			if err != nil {
				return err
			}
			if err := same(all.Data(), map[string]any{"all": int64(2), "total": int64(12), "mean": 6.0}, "count, sum and avg"); err != nil {
				return err
			}
			over5 := col.Where("n", ">", 5)
			filtered, err := over5.NewAggregationQuery().WithCount("c").Get(ctx)
			if err != nil {
				return err
			}
			return same(filtered.Data()["c"], int64(1), "count with a filter")
		},
		"batch": func() error {
			// Deprecated in favour of BulkWriter, which is not atomic; an atomic
			// batch (one Commit) is what this step tests.
			batch := db.Batch()
			batch.Set(col.Doc("delta"), map[string]any{"name": "delta", "n": 4})
			batch.Update(alpha, []firestore.Update{{Path: "batched", Value: true}, {Path: "n", Value: firestore.Increment(1)}})
			batch.Delete(col.Doc("beta"))
			if _, err := batch.Commit(ctx); err != nil {
				return err
			}
			a, err := alpha.Get(ctx)
			if err != nil {
				return err
			}
			_, betaErr := col.Doc("beta").Get(ctx)
			d, err := col.Doc("delta").Get(ctx)
			if err != nil {
				return err
			}
			return same([]any{a.Data()["batched"], a.Data()["n"], status.Code(betaErr), d.Data()["name"]},
				[]any{true, int64(11), codes.NotFound, "delta"}, "after the batch")
		},
		"transaction": func() error {
			// The first attempt's read goes stale (a write from outside lands
			// before its commit), so its commit is ABORTED and the client runs
			// the function again.
			attempts := 0
			var result int64
			err := db.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
				attempts++
				snap, err := tx.Get(alpha)
				if err != nil {
					return err
				}
				n := snap.Data()["n"].(int64)
				if attempts == 1 {
					if _, err := alpha.Update(ctx, []firestore.Update{{Path: "n", Value: firestore.Increment(1)}}); err != nil {
						return err
					}
				}
				result = n + 1
				return tx.Update(alpha, []firestore.Update{{Path: "n", Value: n + 1}})
			})
			if err != nil {
				return err
			}
			if err := same([]any{attempts, result}, []any{2, int64(13)}, "attempts and result"); err != nil {
				return err
			}
			got, err := n(alpha)
			if err != nil {
				return err
			}
			return same(got, int64(13), "alpha.n after the transaction")
		},
		"listCollections": func() error {
			if _, err := alpha.Collection(sub).Doc("s1").Set(ctx, map[string]any{"i": 1}); err != nil {
				return err
			}
			top, err := collectionIDs(db.Collections(ctx))
			if err != nil {
				return err
			}
			found := false
			for _, id := range top {
				found = found || id == col.ID
			}
			if err := expect(found, "Collections has %s: %v", col.ID, top); err != nil {
				return err
			}
			under, err := collectionIDs(alpha.Collections(ctx))
			if err != nil {
				return err
			}
			return same(under, []string{sub}, "alpha.Collections")
		},
		"watchDocument": func() error {
			watch := listen(ctx, func(ctx context.Context) func() (*firestore.DocumentSnapshot, error) {
				return alpha.Snapshots(ctx).Next
			})
			defer watch.cancel()
			nIs := func(want int64) func(*firestore.DocumentSnapshot) bool {
				return func(s *firestore.DocumentSnapshot) bool { return s.Exists() && s.Data()["n"] == want }
			}
			if err := watch.waitFor(nIs(13), "the first snapshot"); err != nil {
				return err
			}
			if _, err := alpha.Update(ctx, []firestore.Update{{Path: "n", Value: 14}}); err != nil {
				return err
			}
			return watch.waitFor(nIs(14), "the update")
		},
		"watchQuery": func() error {
			watch := listen(ctx, func(ctx context.Context) func() (*firestore.QuerySnapshot, error) {
				return col.Where("n", ">=", 5).Snapshots(ctx).Next
			})
			defer watch.cancel()
			epsilon := col.Doc("epsilon")
			changed := func(want ...string) func(*firestore.QuerySnapshot) bool {
				return func(s *firestore.QuerySnapshot) bool { return reflect.DeepEqual(changes(s), want) }
			}
			if err := watch.waitFor(func(s *firestore.QuerySnapshot) bool {
				docs, err := s.Documents.GetAll()
				return err == nil && reflect.DeepEqual(ids(docs), []string{"alpha"})
			}, "the first snapshot"); err != nil {
				return err
			}
			if _, err := epsilon.Set(ctx, map[string]any{"n": 50}); err != nil {
				return err
			}
			if err := watch.waitFor(changed("ADDED epsilon"), "a document joins"); err != nil {
				return err
			}
			if _, err := epsilon.Update(ctx, []firestore.Update{{Path: "n", Value: 51}}); err != nil {
				return err
			}
			if err := watch.waitFor(changed("MODIFIED epsilon"), "a change"); err != nil {
				return err
			}
			if _, err := alpha.Update(ctx, []firestore.Update{{Path: "n", Value: 0}}); err != nil {
				return err
			}
			if err := watch.waitFor(changed("REMOVED alpha"), "a document leaves"); err != nil {
				return err
			}
			if _, err := epsilon.Delete(ctx); err != nil {
				return err
			}
			return watch.waitFor(func(s *firestore.QuerySnapshot) bool {
				return changed("REMOVED epsilon")(s) && s.Size == 0
			}, "a delete")
		},
		"cleanup": func() error {
			// The Go client has no recursive delete: list, then delete with a
			// BulkWriter (BatchWrite).
			var refs []*firestore.DocumentRef
			for _, c := range []*firestore.CollectionRef{col, alpha.Collection(sub)} {
				found, err := c.DocumentRefs(ctx).GetAll()
				if err != nil {
					return err
				}
				refs = append(refs, found...)
			}
			writer := db.BulkWriter(ctx)
			var jobs []*firestore.BulkWriterJob
			for _, ref := range refs {
				job, err := writer.Delete(ref)
				if err != nil {
					return err
				}
				jobs = append(jobs, job)
			}
			writer.End()
			for _, job := range jobs {
				if _, err := job.Results(); err != nil {
					return err
				}
			}
			left, err := col.Documents(ctx).GetAll()
			if err != nil {
				return err
			}
			return same(len(left), 0, "documents left after the deletes")
		},
	}
}

func main() {
	var o options
	flag.StringVar(&o.endpoint, "endpoint", "", "TLS endpoint host:port")
	flag.StringVar(&o.tlsRoot, "tls-root", "", "PEM file of the CA to trust")
	flag.StringVar(&o.token, "token", "", "the caller's token")
	flag.StringVar(&o.project, "project", "demo-firegate", "project id")
	flag.StringVar(&o.prefix, "prefix", fmt.Sprintf("run%d", time.Now().Unix()), "collection prefix")
	flag.StringVar(&o.steps, "steps", strings.Join(allSteps, ","), "steps to run, in order")
	flag.StringVar(&o.deny, "deny", "", "steps expected to be refused with PERMISSION_DENIED")
	flag.Parse()
	if os.Getenv("FIRESTORE_EMULATOR_HOST") == "" && (o.endpoint == "" || o.tlsRoot == "" || o.token == "") {
		fmt.Fprintln(os.Stderr, "FIRESTORE_EMULATOR_HOST, or --endpoint, --tls-root and --token")
		os.Exit(2)
	}
	deny := map[string]bool{}
	for _, name := range strings.Split(o.deny, ",") {
		deny[name] = true
	}

	ctx := context.Background()
	db, err := connect(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(2)
	}
	table := steps(ctx, db, o.prefix)
	failed := false
	for _, name := range strings.Split(o.steps, ",") {
		if name == "" {
			continue
		}
		step, ok := table[name]
		if !ok {
			fmt.Fprintln(os.Stderr, "unknown step", name)
			os.Exit(2)
		}
		started := time.Now()
		err := step()
		if deny[name] {
			err = refused(codes.PermissionDenied, err, name+" is refused")
		}
		line := map[string]any{"client": "go", "step": name, "ok": err == nil}
		if err != nil {
			failed = true
			line["error"] = err.Error()
			var e expectation
			if !errors.As(err, &e) {
				line["code"] = codeName(status.Code(err))
			}
		}
		line["ms"] = time.Since(started).Milliseconds()
		out, _ := json.Marshal(line)
		fmt.Println(string(out))
	}
	db.Close()
	if failed {
		os.Exit(1)
	}
}
