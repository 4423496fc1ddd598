// Package e2e holds rbee's end-to-end tests: they build the rbee binary and
// drive it as a user does (rbee infer, rbee workers, rbee queen), with real
// queen, hive and worker processes on free loopback ports, their own
// RBEE_HOME, and small models written on the fly. Scenario tests are named
// after the scenarios they prove (TestS58…, subtests S08, …).
//
// BenchmarkChain compares an inference sent through keeper → queen → hive →
// worker with the same request sent straight to a worker (time to first
// token and tokens per second); BenchmarkWarmStart and BenchmarkEphemeral
// time whole rbee infer commands:
//
//	go test -run XXX -bench . -benchtime 5x ./internal/e2e
package e2e
