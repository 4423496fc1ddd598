// Package worker is the worker daemon: it serves one loaded model over HTTP
// (docs/protocol.md), streaming tokens as Server-Sent Events. The inference engine
// it serves is package rbee/worker/engine; this package adds the slots, the
// API and the lifecycle around it.
//
// # Lifecycle
//
// A hive starts `rbee worker` (Main) as a child process. The worker binds its
// port first (a taken port ends it with a *PortInUseError, exit status 3),
// then loads the model in the background while it already answers:
//
//   - GET /v1/health (public): state loading, idle, busy or stopping, slots,
//     last_activity (the end of the last inference), and the scheduler's
//     batch (inferences in the last forward pass) and steps (passes run);
//   - GET /v1/ready: ready or not, with the loading progress;
//   - GET /v1/loading/progress: an SSE stream of per-layer progress, then
//     {"stage":"ready"} and [DONE], to any number of subscribers (a late one
//     first gets the current state);
//
// and once loaded it calls the hive back (POST api.ReadyCallback to
// --callback-url with its own token, retried with backoff for up to 30 s)
// and serves:
//
//   - POST /v1/inference: a narration, token events and a done event, or
//     one JSON api.InferenceResult with "stream": false; 503 ALL_SLOTS_BUSY
//     when every slot is in use (or the model is still loading);
//   - GET /metrics: slots, forward passes and a histogram of their batch
//     sizes, in Prometheus's text format;
//   - DELETE /v1/inference/{id}: cancels that request's generation (its
//     stream ends with done stop_reason "cancelled"), 204 always;
//   - POST /v1/admin/shutdown: 202, then the running inferences end, the
//     model is closed and Run returns nil (as when its context ends, on
//     SIGTERM). A stream cut short this way ends with an error event
//     SHUTTING_DOWN (tokens_generated and max_tokens in its details), never
//     with done "cancelled": that stop reason is kept for a generation its
//     own client cancelled.
//
// # Slots and the scheduler
//
// Each slot is an engine Session with its own KV cache; a request takes the
// free slot whose cache shares the longest prefix with its prompt, or is
// refused with ALL_SLOTS_BUSY (the worker does not queue: its caller does).
// By default a worker has DefaultSlots (8) slots, fewer when their KV caches
// would not fit in the memory left after the weights (AutoSlots).
//
// One goroutine, started by Run, drives every running inference: each turn
// it admits the requests submitted since the last one, cancels those whose
// clients cancelled or went away (or all of them, when the worker stops),
// and runs one forward pass of the model over the rest (engine Model.Step):
// a token for each generating request, and for requests still reading their
// prompts a chunk of them (Config.PromptChunk, 256 tokens in all by
// default). A request that arrives mid-generation joins at the next pass.
// Each request's handler gets its tokens through a queue that never blocks
// the loop, so a slow client only delays itself; its slot is free as soon as
// its generation ends, before its client has read the rest. A failure of one
// generation (non-finite values, a full context) fails that request alone.
//
// In a Go program, New(Config) and Run(ctx) run the same worker without a
// process.
package worker
