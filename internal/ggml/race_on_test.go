//go:build race

package ggml

// raceEnabled is true under the race detector, whose sync.Pool drops a
// quarter of what is put back on purpose: allocation counts then mean
// nothing for code that pools its buffers.
const raceEnabled = true
