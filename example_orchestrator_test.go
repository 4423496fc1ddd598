package rbee_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"

	"rbee"
	"rbee/orchestrator"
)

// An embedded queen runs an inference on the local node: it starts the
// node's hive, which starts a worker with the model, and the tokens stream
// back to the in-process client.
//
// The hive and the worker are copies of the running program, which must
// call rbee.HandleChildProcess first thing in main (this example's test
// binary does it in TestMain).
func ExampleOrchestrator() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "rbee-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	model := tinyModel(dir)

	o := &rbee.Orchestrator{Config: orchestrator.Config{
		Addr: "127.0.0.1:0", // any free port; o.URL() says which
		Home: filepath.Join(dir, "home"),
		// Free ports for the local hive and its workers, instead of the
		// defaults (9200, and 8001 and up).
		LocalHivePort:        freePort(),
		LocalWorkerPortStart: freePort(),
	}}
	if err := o.Up(ctx); err != nil {
		log.Fatal(err)
	}
	defer o.Close() // stops the hive and its worker too

	c := o.Client() // served in process: no sockets
	greedy := 0.0
	req := rbee.TaskRequest{
		Node:           rbee.LocalNode,
		Model:          "file:" + model,
		Prompt:         "Once upon a time",
		SamplingParams: rbee.SamplingParams{MaxTokens: 6, Temperature: &greedy},
	}
	for ev, err := range c.Infer(ctx, req) {
		if err != nil {
			log.Fatal(err)
		}
		if ev.Kind == rbee.KindDone {
			fmt.Printf("%d tokens, stop: %s\n", ev.Done.TotalTokens, ev.Done.StopReason)
		}
	}

	workers, err := c.Workers(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range workers {
		fmt.Printf("worker on %s: %s, %d/%d slots free\n", w.Node, w.State, w.SlotsAvailable, w.SlotsTotal)
	}
	// Output:
	// 6 tokens, stop: max_tokens
	// worker on local: idle, 8/8 slots free
}

// tinyModel writes a small llama model with random weights into dir and
// returns its path. Any GGUF file will do; this one comes from the rbee
// command (rbee synth-model), run from the rbee repository.
func tinyModel(dir string) string {
	path := filepath.Join(dir, "tiny-Q8_0.gguf")
	cmd := exec.Command("go", "run", "./cmd/rbee", "synth-model", "--preset", "tiny", "--quant", "Q8_0", "--out", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		log.Fatalf("writing the model: %v\n%s", err, out)
	}
	return path
}

// freePort returns a loopback port that nothing listens on at the moment.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
