package rbee_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"rbee"
	"rbee/orchestrator"
)

// Errors carry a code: test for it with errors.Is, read the rest with
// errors.As.
func ExampleError() {
	home, err := os.MkdirTemp("", "rbee-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(home)
	o := &rbee.Orchestrator{Config: orchestrator.Config{Home: home}}
	defer o.Close()

	req := rbee.TaskRequest{Node: "gpu-box", Model: "hf:TheBloke/TinyLlama-1.1B-GGUF", Prompt: "Hello"}
	for _, err := range o.Client().Infer(context.Background(), req) {
		var e *rbee.Error
		if errors.Is(err, rbee.ErrNodeNotFound) && errors.As(err, &e) {
			fmt.Println(e.Code)
			fmt.Println(e.Hint())
		}
	}
	// Output:
	// NODE_NOT_FOUND
	// add it first: rbee setup add-node --name gpu-box --ssh-host HOST --ssh-user USER --install-path PATH
}

// Stream one inference from a queen that runs on this machine (rbee queen).
func ExampleClient_Infer() {
	var c rbee.Client // the queen at http://127.0.0.1:8080
	ctx := context.Background()
	req := rbee.TaskRequest{Node: rbee.LocalNode, Model: "hf:TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", Prompt: "Once upon a time"}
	for ev, err := range c.Infer(ctx, req) {
		if err != nil {
			log.Fatal(err)
		}
		switch ev.Kind {
		case rbee.KindNarration:
			if ev.Narration.Action == rbee.ActionTaskStart {
				fmt.Fprintln(os.Stderr, "task", ev.Narration.RequestID) // for c.CancelTask
			}
		case rbee.KindToken:
			fmt.Print(ev.Token.Token)
		case rbee.KindDone:
			fmt.Println()
		}
	}
}

// A program that embeds an Orchestrator is its own hive and worker binary.
func ExampleHandleChildProcess() {
	// First thing in main: returns at once unless this process was started
	// by rbee as a hive or worker, in which case it serves that role and
	// exits.
	rbee.HandleChildProcess()

	o := &rbee.Orchestrator{} // Binary defaults to this program
	defer o.Close()
	// …
}
