//go:build race

package engine

// raceEnabled is true under the race detector, which slows the forward pass
// tenfold or more: the longest arithmetic checks then run one kernel level.
const raceEnabled = true
