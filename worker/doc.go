// Package worker is the worker daemon: it serves one loaded model over HTTP
// (DESIGN §3), streaming tokens as Server-Sent Events. The inference engine
// it serves is package rbee/worker/engine.
package worker
