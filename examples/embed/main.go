// Command embed is a small web service with an rbee queen inside it.
//
//	go run ./examples/embed --model file:/models/tinyllama-Q4_K_M.gguf
//	curl -N -d 'Once upon a time' http://127.0.0.1:8090/complete
//	rbee workers list --queen-url http://127.0.0.1:8090
//
// POST /complete streams the continuation of the request body as plain
// text. The queen's own API is mounted on the same server, so the rbee
// command can list and stop the service's workers. The program is also its
// own hive and worker binary: rbee.HandleChildProcess, first thing in main,
// serves those roles when the queen starts copies of it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"rbee"
	"rbee/orchestrator"
)

func main() {
	rbee.HandleChildProcess()

	addr := flag.String("addr", "127.0.0.1:8090", "address to serve on")
	model := flag.String("model", "", "model reference, e.g. file:/models/tinyllama-Q4_K_M.gguf (required)")
	maxTokens := flag.Int("max-tokens", 64, "most tokens per completion")
	home := flag.String("home", "", "rbee state directory (default $RBEE_HOME or ~/.rbee)")
	hivePort := flag.Int("hive-port", 0, "port of the local hive (default 9200)")
	workerPort := flag.Int("worker-port-start", 0, "first port for workers (default 8001)")
	flag.Parse()
	if *model == "" {
		fmt.Fprintln(os.Stderr, "embed: --model is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr, *model, *maxTokens, &rbee.Orchestrator{Config: orchestrator.Config{
		Home:                 *home,
		LocalHivePort:        *hivePort,
		LocalWorkerPortStart: *workerPort,
	}}); err != nil {
		log.Fatal(err)
	}
}

// serve runs the service until ctx ends, then stops the queen (and the hive
// and workers it started).
func serve(ctx context.Context, addr, model string, maxTokens int, o *rbee.Orchestrator) error {
	defer o.Close()
	c := o.Client() // in process: the service calls its queen without a socket

	mux := http.NewServeMux()
	mux.HandleFunc("POST /complete", func(w http.ResponseWriter, r *http.Request) {
		prompt, err := io.ReadAll(io.LimitReader(r.Body, 32<<10))
		if err != nil || len(prompt) == 0 {
			http.Error(w, "send the prompt as the request body", http.StatusBadRequest)
			return
		}
		req := rbee.TaskRequest{Node: rbee.LocalNode, Model: model, Prompt: string(prompt), SamplingParams: rbee.SamplingParams{MaxTokens: maxTokens}}
		rc := http.NewResponseController(w)
		started := false
		for ev, err := range c.Infer(r.Context(), req) {
			if err != nil {
				var e *rbee.Error
				if !started && errors.As(err, &e) {
					http.Error(w, e.Message, e.HTTPStatus())
					return
				}
				log.Printf("completion failed: %v", err)
				return
			}
			if ev.Kind == rbee.KindToken {
				if !started {
					w.Header().Set("Content-Type", "text/plain; charset=utf-8")
					started = true
				}
				io.WriteString(w, ev.Token.Token)
				_ = rc.Flush()
			}
		}
	})
	// The queen's API (GET /health, /v2/...) on the same server.
	mux.Handle("/", o.Handler())

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving on http://%s (model %s)", ln.Addr(), model)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Print("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
