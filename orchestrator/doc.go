// Package orchestrator is the queen: the daemon on the control machine that
// keeps the node registry, starts hives, finds or spawns workers and relays
// inference streams to clients (DESIGN §1–2).
package orchestrator
